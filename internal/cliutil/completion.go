package cliutil

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionCommand prints a shell completion script for the program. The
// scripts ask the program itself (urfave/cli's --generate-bash-completion),
// so they complete commands and flags of the installed version.
func completionCommand(prog string) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: fmt.Sprintf("bash:  source <(%[1]s completion bash)     (or save it in /etc/bash_completion.d/%[1]s)\n"+
			"zsh:   source <(%[1]s completion zsh)      (or save it as _%[1]s in a directory of $fpath)", prog),
		Action: func(c *cli.Context) error {
			script, ok := completionScripts[c.Args().First()]
			if !ok || c.NArg() != 1 {
				return cli.Exit(fmt.Sprintf("usage: %s completion bash|zsh", prog), 2)
			}
			fn := "_herd_" + strings.ReplaceAll(prog, "-", "_")
			_, err := fmt.Fprint(c.App.Writer, strings.NewReplacer("PROG", prog, "FUNC", fn).Replace(script))
			return err
		},
	}
}

var completionScripts = map[string]string{
	"bash": `# bash completion for PROG
FUNC() {
  local cur=${COMP_WORDS[COMP_CWORD]} opts
  if [[ $cur == -* ]]; then
    opts=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
}
complete -o default -F FUNC PROG
`,
	"zsh": `#compdef PROG
# zsh completion for PROG
FUNC() {
  local -a opts
  local cur=${words[-1]}
  if [[ $cur == -* ]]; then
    opts=("${(@f)$(env 0=zsh ${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(env 0=zsh ${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n ${opts[1]} ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if (( $+functions[compdef] )); then
  compdef FUNC PROG
fi
`,
}
