package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/client"
)

// remote holds the flags of commands that talk to a server.
type remote struct {
	server    string
	tokenFile string
	tls       client.TLSFiles
}

func (r *remote) bind(cmd *cobra.Command) {
	server := os.Getenv("MOAT_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&r.server, "server", server, "server URL (MOAT_SERVER)")
	cmd.Flags().StringVar(&r.tokenFile, "token-file", filepath.Join("moat-data", "bootstrap.token"), "file holding the API token, read when MOAT_TOKEN is unset")
	cmd.Flags().StringVar(&r.tls.CA, "ca-cert", os.Getenv("MOAT_CA_CERT"), "PEM bundle of CAs to trust for an https server (MOAT_CA_CERT)")
	cmd.Flags().StringVar(&r.tls.Cert, "client-cert", os.Getenv("MOAT_CLIENT_CERT"), "PEM client certificate, for a server run with --client-ca (MOAT_CLIENT_CERT)")
	cmd.Flags().StringVar(&r.tls.Key, "client-key", os.Getenv("MOAT_CLIENT_KEY"), "PEM key of the client certificate (MOAT_CLIENT_KEY)")
}

func (r *remote) client() (*client.Client, error) {
	token := os.Getenv("MOAT_TOKEN")
	if token == "" {
		b, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return nil, errors.New("no API token: set MOAT_TOKEN (or --token-file; moat serve writes <data-dir>/bootstrap.token on first start)")
		}
		token = strings.TrimSpace(string(b))
	}
	return client.NewWithTLS(r.server, token, r.tls)
}
