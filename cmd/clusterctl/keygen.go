package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/urfave/cli/v2"
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
