package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// Listen opens the server's listening socket: plain TCP, or TLS when a
// certificate is configured, requiring client certificates from the
// configured CAs when there are some.
func (a *App) Listen() (net.Listener, error) {
	cfg, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", a.Config.Addr)
	if err != nil {
		return nil, fmt.Errorf("app: listen on %s: %w", a.Config.Addr, err)
	}
	if cfg == nil {
		return ln, nil
	}
	return tls.NewListener(ln, cfg), nil
}

// TLS reports whether the server speaks HTTPS.
func (a *App) TLS() bool { return a.Config.TLSCert != "" }

func (a *App) tlsConfig() (*tls.Config, error) {
	c := a.Config
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		// The error names the files and what is wrong, never key material.
		return nil, fmt.Errorf("app: TLS certificate %s and key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("app: client CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("app: client CA bundle %s holds no PEM certificate", c.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
