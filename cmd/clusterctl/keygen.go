package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

// keygenCommand prints a new gossip encryption key: 32 random bytes in
// base64, for --encrypt (HERD_ENCRYPT) on every gateway and agent.
func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "print a new gossip encryption key (base64, 32 bytes) for --encrypt / HERD_ENCRYPT",
		Action: func(c *cli.Context) error {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			_, err := fmt.Fprintln(c.App.Writer, base64.StdEncoding.EncodeToString(key))
			return err
		},
	}
}

// keysCommand rotates the gossip key through a gateway: install a new key
// on every member, use it, then remove the old one.
func keysCommand() *cli.Command {
	op := func(name, usage string) *cli.Command {
		return &cli.Command{
			Name: name, Usage: usage, ArgsUsage: "KEY", Flags: []cli.Flag{jsonFlag},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return cli.Exit(fmt.Sprintf("keys %s: want one KEY (base64, from clusterctl keygen)", name), 2)
				}
				res, err := client(c).KeyOp(c.Context, name, c.Args().First())
				var se *api.StatusError
				if errors.As(err, &se) && se.Status == http.StatusBadGateway {
					return cli.Exit(err.Error(), exitFailed) // done on some members, not all
				}
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, res)
				}
				_, err = fmt.Fprintf(c.App.Writer, "%s: done on %d of %d members\n", name, res.Responses, res.Members)
				return err
			},
		}
	}
	return &cli.Command{
		Name:  "keys",
		Usage: "rotate the gossip encryption key: install NEW, use NEW, remove OLD",
		Subcommands: []*cli.Command{
			op("install", "add a key to every member's keyring"),
			op("use", "make an installed key the one every member encrypts with"),
			op("remove", "remove a key no member uses any more"),
			{
				Name: "list", Usage: "the keys installed across the cluster", Flags: []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					res, err := client(c).Keys(c.Context)
					if err != nil {
						return err
					}
					return output(c, res, func(res api.KeyResult) [][]string {
						rows := [][]string{{"KEY", "MEMBERS", "PRIMARY ON"}}
						for _, k := range slices.Sorted(maps.Keys(res.Keys)) {
							rows = append(rows, []string{k, fmt.Sprintf("%d/%d", res.Keys[k], res.Members), fmt.Sprint(res.Primary[k])})
						}
						return rows
					})
				},
			},
		},
	}
}
