package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// TLSFiles are the PEM files a client uses to reach a server over HTTPS:
// CA, a bundle to trust beside the system's (a server with a private
// certificate); Cert and Key, a client certificate for a server run with
// --client-ca. All may be empty.
type TLSFiles struct {
	CA, Cert, Key string
}

// NewWithTLS returns a client for server that trusts files.CA and presents
// files.Cert, at TLS 1.2 or later.
func NewWithTLS(server, token string, files TLSFiles) (*Client, error) {
	c := New(server, token)
	if files == (TLSFiles{}) {
		return c, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if files.CA != "" {
		pem, err := os.ReadFile(files.CA)
		if err != nil {
			return nil, fmt.Errorf("client: CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA bundle %s holds no PEM certificate", files.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case (files.Cert == "") != (files.Key == ""):
		return nil, errors.New("client: a client certificate needs both its certificate and its key file")
	case files.Cert != "":
		pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			// Names the files, never key material.
			return nil, fmt.Errorf("client: client certificate %s and key %s: %w", files.Cert, files.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	c.HTTP = &http.Client{Timeout: 90 * time.Second, Transport: t}
	return c, nil
}
