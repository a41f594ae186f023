package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/vault"
)

// Bounds on TLS material, so that a resource or a secret cannot make the
// server parse without end.
const (
	maxCABundle     = 1 << 20
	maxCAFilePath   = 1024
	maxCertChainLen = 10
)

// TLS versions a connector may ask for; nothing below 1.2 is accepted.
var tlsVersions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// connectorTLS is a connector's TLS settings as built.
type connectorTLS struct {
	// roots verify the upstream; nil trusts the system's roots.
	roots *x509.CertPool
	// caPEM is the bundle roots were read from, for the token endpoint,
	// which trusts it in addition to the system's roots.
	caPEM      []byte
	minVersion uint16
	// clientCertificate names the vault secret holding the client
	// certificate and key; "" for none.
	clientCertificate string
}

// loadConnectorTLS reads spec's CA bundle or file. A relative CA file is
// in dataDir.
func loadConnectorTLS(spec *ConnectorTLS, dataDir string) (connectorTLS, error) {
	out := connectorTLS{minVersion: tls.VersionTLS12}
	if spec == nil {
		return out, nil
	}
	v, ok := tlsVersions[spec.MinVersion]
	if !ok {
		return out, errors.New("tls.minVersion must be 1.2 or 1.3")
	}
	out.minVersion = v
	if spec.ClientCertificate != nil {
		out.clientCertificate = spec.ClientCertificate.Secret
	}
	switch {
	case spec.CABundle != "" && spec.CAFile != "":
		return out, errors.New("tls: set caBundle or caFile, not both")
	case spec.CABundle != "":
		out.caPEM = []byte(spec.CABundle)
	case spec.CAFile != "":
		data, err := readCAFile(spec.CAFile, dataDir)
		if err != nil {
			return out, err
		}
		out.caPEM = data
	}
	if out.caPEM != nil {
		pool, err := parseCABundle(out.caPEM)
		if err != nil {
			return out, fmt.Errorf("tls: %w", err)
		}
		out.roots = pool
	}
	return out, nil
}

func readCAFile(path, dataDir string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		if dataDir == "" {
			return nil, errors.New("tls.caFile: the path is relative and no data directory is set")
		}
		path = filepath.Join(dataDir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tls.caFile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return nil, fmt.Errorf("tls.caFile: read %s: %w", path, err)
	}
	if len(data) > maxCABundle {
		return nil, fmt.Errorf("tls.caFile: %s is larger than %d bytes", path, maxCABundle)
	}
	return data, nil
}

// parseCABundle reads PEM certificates into a pool. Text between blocks
// (the comments of a system bundle) is skipped; any block that is not a
// certificate is refused. Errors count blocks and never quote them.
func parseCABundle(data []byte) (*x509.CertPool, error) {
	if len(data) > maxCABundle {
		return nil, fmt.Errorf("the CA bundle is larger than %d bytes", maxCABundle)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			if isPrivateKeyBlock(block.Type) || block.Type == "ENCRYPTED PRIVATE KEY" {
				return nil, fmt.Errorf("the CA bundle's block %d is a private key: a CA bundle holds certificates only (keep keys in the vault)", n)
			}
			return nil, fmt.Errorf("the CA bundle's block %d is not a CERTIFICATE", n)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the CA bundle's certificate %d does not parse", n)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("the CA bundle holds no PEM certificate")
	}
	return pool, nil
}

func isPrivateKeyBlock(typ string) bool {
	return typ == "PRIVATE KEY" || typ == "EC PRIVATE KEY" || typ == "RSA PRIVATE KEY"
}

// parseClientCertificate reads a client certificate chain (leaf first)
// and its private key, both PEM, as a vault secret holds them. Errors say
// what is wrong with the material, never a byte of it.
func parseClientCertificate(data []byte) (tls.Certificate, error) {
	var chain [][]byte
	var keyBlock *pem.Block
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			if len(chain) == maxCertChainLen {
				return tls.Certificate{}, fmt.Errorf("the client certificate chain has more than %d certificates", maxCertChainLen)
			}
			chain = append(chain, block.Bytes)
		case block.Type == "ENCRYPTED PRIVATE KEY" || isPrivateKeyBlock(block.Type) && block.Headers["Proc-Type"] != "":
			return tls.Certificate{}, errors.New("the client certificate's private key is encrypted; store it unencrypted in the vault, which encrypts it")
		case isPrivateKeyBlock(block.Type):
			if keyBlock != nil {
				return tls.Certificate{}, errors.New("the client certificate secret holds more than one private key")
			}
			keyBlock = block
		default:
			return tls.Certificate{}, errors.New("the client certificate secret holds a PEM block that is neither a CERTIFICATE nor a PRIVATE KEY")
		}
	}
	if len(chain) == 0 {
		return tls.Certificate{}, errors.New("the client certificate secret holds no PEM CERTIFICATE")
	}
	if keyBlock == nil {
		return tls.Certificate{}, errors.New("the client certificate secret holds no PEM PRIVATE KEY")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, errors.New("the client certificate does not parse")
	}
	key, err := parsePrivateKey(keyBlock)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, errors.New("the private key does not belong to the client certificate (the first CERTIFICATE)")
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("the client certificate's %s does not parse", block.Type)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, errors.New("the client certificate's private key is not an ECDSA, RSA or Ed25519 key")
}

// hardenedClient is base (Go's default transport when nil) with at least
// TLS 1.2 on every connection, whatever GODEBUG says. Its transport is
// cloned once per catalog, keeping the dialer (the egress policy). A
// transport that is not an *http.Transport cannot be configured and is
// kept as it is; a connector with TLS settings then fails to build.
func hardenedClient(base *http.Client) *http.Client {
	c := http.Client{}
	if base != nil {
		c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok || t.TLSClientConfig != nil && t.TLSClientConfig.MinVersion >= tls.VersionTLS12 {
		c.Transport = rt
		return &c
	}
	c.Transport = cloneTransportTLS(t, func(cfg *tls.Config) { cfg.MinVersion = tls.VersionTLS12 })
	return &c
}

// cloneTransportTLS is a clone of t with its TLS configuration changed by
// edit, still speaking HTTP/2 where t would have: Go turns automatic
// HTTP/2 off for a transport with its own TLS configuration.
func cloneTransportTLS(t *http.Transport, edit func(*tls.Config)) *http.Transport {
	// Clone first: it runs t's lazy HTTP/2 set-up, once, which writes t's
	// TLS fields; reading them before would race with another goroutine's
	// first use of t (http.DefaultTransport is everyone's).
	out := t.Clone()
	// The set-up made HTTP/2 automatic on t when it filled in t's
	// TLSNextProto (the clone leaves such a map out) with h2.
	automaticHTTP2 := t.Protocols == nil && out.TLSNextProto == nil && t.TLSNextProto["h2"] != nil
	if out.TLSClientConfig == nil {
		out.TLSClientConfig = &tls.Config{}
	}
	edit(out.TLSClientConfig)
	if automaticHTTP2 {
		out.ForceAttemptHTTP2 = true
	}
	return out
}

// connectorHTTPClient is base with spec's TLS settings: its own roots and
// minimum version and, with a client certificate, a transport that asks
// the vault for it before each request.
func connectorHTTPClient(base *http.Client, settings connectorTLS, spec Connector, opts CatalogOptions) (*http.Client, error) {
	if spec.TLS == nil {
		return base, nil
	}
	c := *base
	t, ok := c.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("tls settings need the server's HTTP transport, and this one is a %T", c.Transport)
	}
	configured := cloneTransportTLS(t, func(cfg *tls.Config) {
		cfg.MinVersion = max(cfg.MinVersion, settings.minVersion)
		if settings.roots != nil {
			cfg.RootCAs = settings.roots
		}
	})
	c.Transport = configured
	// Without a vault the connector is built as missing its credential
	// (Catalog.build) and sends nothing.
	if settings.clientCertificate != "" && opts.Secrets != nil {
		c.Transport = &clientCertTransport{
			base: configured, secrets: opts.Secrets, env: opts.Environment, connector: spec.Name, secret: settings.clientCertificate,
		}
	}
	return &c, nil
}

// tokenHTTPClient is the client an OAuth 2.0 token request is sent with:
// base with the connector's minimum TLS version, trusting its CA bundle
// besides the system's roots (an identity provider is often public while
// the upstream is private), never presenting its client certificate, and
// following no redirect, so that the client secret goes to the token URL
// and nowhere else.
func tokenHTTPClient(base *http.Client, settings connectorTLS) (*http.Client, error) {
	c := *base
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = tokenRequestTimeout
	t, ok := c.Transport.(*http.Transport)
	if !ok {
		return &c, nil
	}
	var roots *x509.CertPool
	if settings.caPEM != nil {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(settings.caPEM) {
			return nil, errors.New("tls: the CA bundle holds no usable certificate")
		}
		roots = pool
	}
	c.Transport = cloneTransportTLS(t, func(cfg *tls.Config) {
		cfg.MinVersion = max(cfg.MinVersion, settings.minVersion)
		if roots != nil {
			cfg.RootCAs = roots
		}
	})
	return &c, nil
}

// clientCertTransport sends each request over connections presenting the
// connector's client certificate, once the vault has allowed the secret
// holding it for this request's host (and connector, model, environment).
// Connections are pooled by a transport per certificate, so a connection
// carrying the certificate only ever serves requests the vault allowed: a
// request to another host is refused before anything is dialled, and a
// redirect is a new request, checked again.
type clientCertTransport struct {
	base      *http.Transport
	secrets   SecretResolver
	env       string
	connector string
	secret    string

	mu sync.Mutex
	// current presents the certificate whose PEM has digest; rotating
	// the secret builds a new one and lets the old one's connections go.
	digest  [sha256.Size]byte
	current *http.Transport
}

func (t *clientCertTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	scope := callScopeFrom(req.Context())
	access := vault.Access{
		Environment: t.env, Connector: t.connector, Host: req.URL.Host,
		RunID: scope.runID, Workflow: scope.workflow, Model: scope.model,
	}
	material, err := t.secrets.Resolve(req.Context(), access, t.env, t.secret)
	if err == nil {
		var rt *http.Transport
		rt, err = t.transportFor(material)
		clear(material)
		if err == nil {
			return rt.RoundTrip(req)
		}
	}
	connectors.CloseRequestBody(req)
	denied := &CredentialDeniedError{Connector: t.connector, Secret: t.secret, Host: req.URL.Host, Err: err}
	scope.setDenied(denied)
	return nil, denied
}

// transportFor is the transport presenting the certificate in material,
// built when the secret's value changed.
func (t *clientCertTransport) transportFor(material []byte) (*http.Transport, error) {
	digest := sha256.Sum256(material)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil && digest == t.digest {
		return t.current, nil
	}
	cert, err := parseClientCertificate(material)
	if err != nil {
		return nil, err
	}
	next := cloneTransportTLS(t.base, func(cfg *tls.Config) { cfg.Certificates = []tls.Certificate{cert} })
	if t.current != nil {
		t.current.CloseIdleConnections()
	}
	t.current, t.digest = next, digest
	return next, nil
}

func (t *clientCertTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil {
		t.current.CloseIdleConnections()
	}
	t.base.CloseIdleConnections()
}
