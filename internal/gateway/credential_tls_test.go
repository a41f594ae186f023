package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/vault/vaulttest"
)

// testPKI is a private CA made for one test.
type testPKI struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    string
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pool: pool, serial: 1}
}

// issue returns a certificate for cn (a server's for 127.0.0.1, or a
// client's) signed by the CA: the PEM certificate, the PEM private key
// (PKCS#8) and the pair for a tls.Config.
func (p *testPKI) issue(t testing.TB, cn string, client bool) (certPEM, keyPEM string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	pair, err = tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

// tlsUpstream is an https upstream whose certificate the test's CA issued.
// It counts the connections it accepts and records each request's client
// certificate.
type tlsUpstream struct {
	srv   *httptest.Server
	conns atomic.Int32

	mu      sync.Mutex
	clients []string // each request's client certificate's common name
}

func newTLSUpstream(t *testing.T, pki *testPKI, configure func(*tls.Config)) *tlsUpstream {
	t.Helper()
	u := &tlsUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		u.mu.Lock()
		u.clients = append(u.clients, cn)
		u.mu.Unlock()
		writeUpstreamAnswer(w, r, nil)
	}))
	_, _, serverPair := pki.issue(t, "upstream", false)
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}}
	if configure != nil {
		configure(u.srv.TLS)
	}
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	// The handshake errors the tests provoke are expected.
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *tlsUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.clients...)
}

// requireClientCertificates makes the server ask for a certificate the
// CA issued.
func requireClientCertificates(pki *testPKI) func(*tls.Config) {
	return func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pki.pool
	}
}

func tlsConnector(u *tlsUpstream, settings *ConnectorTLS) Connector {
	c := upstreamConnector(TypeHTTP, u.srv.URL, nil)
	c.TLS = settings
	return c
}

// mtlsSetup: a CA, an upstream requiring client certificates, and a vault
// holding a client certificate and key bound to hosts (the upstream's when
// none are given).
func mtlsSetup(t *testing.T, hosts ...string) (*testPKI, *tlsUpstream, *vault.Vault, *vaulttest.Events) {
	t.Helper()
	pki := newTestPKI(t, "moat test CA")
	up := newTLSUpstream(t, pki, requireClientCertificates(pki))
	certPEM, keyPEM, _ := pki.issue(t, "moat-client", true)
	if len(hosts) == 0 {
		hosts = []string{hostOf(t, up.srv.URL)}
	}
	v, ev := newSecretsVault(t, testSecret{name: "mtls-client", value: certPEM + pki.pem + keyPEM, connectors: []string{"up"}, hosts: hosts})
	return pki, up, v, ev
}

// A connector presents the client certificate held in the vault, once the
// vault has allowed it for the upstream's host; every request is an access.
func TestMTLSClientCertificateFromVault(t *testing.T) {
	t.Parallel()
	pki, up, v, ev := mtlsSetup(t)
	c := tlsConnector(up, &ConnectorTLS{CABundle: pki.pem, ClientCertificate: &TLSClientCertificate{Secret: "mtls-client"}})
	if problems := CheckConnector(c); len(problems) > 0 {
		t.Fatal(problems)
	}
	cat, err := buildOne(t, c, CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := callUp(t, cat); err != nil {
			t.Fatal(err)
		}
	}
	if got := up.requests(); !equalSlices(got, []string{"moat-client", "moat-client"}) {
		t.Errorf("server saw client certificates %q", got)
	}
	acc := ev.Of(vault.KindAccess)
	if len(acc) != 2 || acc[0].Outcome != vault.OutcomeOK || acc[0].Name != "mtls-client" || acc[0].Access.Host != hostOf(t, up.srv.URL) {
		t.Errorf("accesses = %+v, want two allowed for the upstream's host", acc)
	}
}

// Without the certificate the server refuses the handshake.
func TestMTLSWithoutClientCertificateFails(t *testing.T) {
	t.Parallel()
	pki, up, v, _ := mtlsSetup(t)
	cat, err := buildOne(t, tlsConnector(up, &ConnectorTLS{CABundle: pki.pem}), CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	if err := callUp(t, cat); err == nil {
		t.Fatal("the call succeeded without a client certificate")
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("the server answered %d requests", n)
	}
}

// A certificate whose secret is not bound to the request's host is refused
// before anything is dialled: the server accepts no connection.
func TestMTLSCertificateRefusedForUnboundHostBeforeDialling(t *testing.T) {
	t.Parallel()
	pki, up, v, ev := mtlsSetup(t, "upstream.example.com")
	cat, err := buildOne(t, tlsConnector(up, &ConnectorTLS{CABundle: pki.pem, ClientCertificate: &TLSClientCertificate{Secret: "mtls-client"}}), CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	err = callUp(t, cat)
	var denied *CredentialDeniedError
	if !errors.As(err, &denied) || denied.Secret != "mtls-client" || denied.Host != hostOf(t, up.srv.URL) {
		t.Fatalf("err = %v, want the certificate refused for the upstream's host", err)
	}
	if n := up.conns.Load(); n != 0 {
		t.Errorf("the server accepted %d connections", n)
	}
	if acc := ev.Of(vault.KindAccess); len(acc) != 1 || acc[0].Outcome != vault.OutcomeDenied {
		t.Errorf("accesses = %+v, want one denied", acc)
	}
}

// A client certificate connector on a server without a vault fails closed
// at each call, naming the secret.
func TestMTLSWithoutVault(t *testing.T) {
	t.Parallel()
	pki, up, _, _ := mtlsSetup(t)
	cat, err := buildOne(t, tlsConnector(up, &ConnectorTLS{CABundle: pki.pem, ClientCertificate: &TLSClientCertificate{Secret: "mtls-client"}}), CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = callUp(t, cat)
	if err == nil || !strings.Contains(err.Error(), "vault secret mtls-client for the client certificate (this server has no vault)") {
		t.Fatalf("err = %v", err)
	}
	if n := up.conns.Load(); n != 0 {
		t.Errorf("the server accepted %d connections", n)
	}
}

// A secret that does not hold a usable certificate and key fails the call
// without a byte of it in the error.
func TestMTLSBadCertificateSecret(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat test CA")
	up := newTLSUpstream(t, pki, requireClientCertificates(pki))
	certPEM, _, _ := pki.issue(t, "moat-client", true)
	_, otherKey, _ := pki.issue(t, "other", true)
	v, _ := newSecretsVault(t, testSecret{name: "mtls-client", value: certPEM + otherKey, connectors: []string{"up"}, hosts: []string{hostOf(t, up.srv.URL)}})
	cat, err := buildOne(t, tlsConnector(up, &ConnectorTLS{CABundle: pki.pem, ClientCertificate: &TLSClientCertificate{Secret: "mtls-client"}}), CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	err = callUp(t, cat)
	if err == nil || !strings.Contains(err.Error(), "does not belong to the client certificate") {
		t.Fatalf("err = %v", err)
	}
	assertNoPEMIn(t, err.Error(), certPEM+otherKey)
	if n := up.conns.Load(); n != 0 {
		t.Errorf("the server accepted %d connections", n)
	}
}

// assertNoPEMIn fails if msg holds any line of material's base64.
func assertNoPEMIn(t *testing.T, msg, material string) {
	t.Helper()
	for _, line := range strings.Split(material, "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
			t.Fatalf("the error repeats key material: %q", msg)
		}
	}
}

// Nothing below TLS 1.2 is spoken, by a connector with TLS settings or
// without, even over a base client that would; minVersion 1.3 refuses a
// 1.2 server.
func TestTLSMinimumVersion(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat test CA")
	old := newTLSUpstream(t, pki, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
	lenient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS10}}}
	// The server does speak TLS 1.1, to a client that allows it.
	resp, err := lenient.Get(old.srv.URL)
	if err != nil {
		t.Fatalf("the TLS 1.1 server cannot be reached at all: %v", err)
	}
	resp.Body.Close()
	if resp.TLS.Version != tls.VersionTLS11 {
		t.Fatalf("control connection spoke %s", tls.VersionName(resp.TLS.Version))
	}

	for _, tc := range []struct {
		name     string
		settings *ConnectorTLS
	}{{"with tls settings", &ConnectorTLS{CABundle: pki.pem}}, {"without", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(old.requests())
			cat, err := buildOne(t, tlsConnector(old, tc.settings), CatalogOptions{HTTPClient: lenient})
			if err != nil {
				t.Fatal(err)
			}
			err = callUp(t, cat)
			if err == nil || !strings.Contains(err.Error(), "protocol version") {
				t.Fatalf("err = %v, want the handshake refused", err)
			}
			if n := len(old.requests()) - before; n != 0 {
				t.Errorf("the server answered %d requests", n)
			}
		})
	}

	t.Run("1.3 required", func(t *testing.T) {
		up12 := newTLSUpstream(t, pki, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
		cat, err := buildOne(t, tlsConnector(up12, &ConnectorTLS{CABundle: pki.pem}), CatalogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := callUp(t, cat); err != nil {
			t.Fatalf("TLS 1.2 by default: %v", err)
		}
		cat, err = buildOne(t, tlsConnector(up12, &ConnectorTLS{CABundle: pki.pem, MinVersion: "1.3"}), CatalogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := callUp(t, cat); err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("err = %v, want TLS 1.2 refused", err)
		}
	})
}

// A private CA's server certificate verifies with the connector's CA
// bundle or file, and not without; a per-environment override sets it.
func TestTLSPrivateCA(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat private CA")
	up := newTLSUpstream(t, pki, nil)
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "ca.pem"), []byte(pki.pem), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		settings *ConnectorTLS
		env      map[string]ConnectorOverride
		inEnv    string
		ok       bool
	}{
		{"bundle", &ConnectorTLS{CABundle: pki.pem}, nil, "dev", true},
		{"file relative to the data dir", &ConnectorTLS{CAFile: "ca.pem"}, nil, "dev", true},
		{"absolute file", &ConnectorTLS{CAFile: filepath.Join(dataDir, "ca.pem")}, nil, "dev", true},
		{"system roots", nil, nil, "dev", false},
		{"another CA", &ConnectorTLS{CABundle: newTestPKI(t, "other CA").pem}, nil, "dev", false},
		{"override in prod", nil, map[string]ConnectorOverride{"prod": {TLS: &ConnectorTLS{CABundle: pki.pem}}, "dev": {}}, "prod", true},
		{"override not in dev", nil, map[string]ConnectorOverride{"prod": {TLS: &ConnectorTLS{CABundle: pki.pem}}, "dev": {}}, "dev", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tlsConnector(up, tc.settings)
			c.Environments = tc.env
			if problems := CheckConnector(c); len(problems) > 0 {
				t.Fatal(problems)
			}
			cat, err := buildOne(t, c, CatalogOptions{Environment: tc.inEnv, DataDir: dataDir})
			if err != nil {
				t.Fatal(err)
			}
			err = callUp(t, cat)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("call failed: %v", err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")):
				t.Fatalf("err = %v, want the server's certificate refused", err)
			}
		})
	}
}

// Settings that cannot be honoured stop the build with a clear error.
func TestTLSBuildErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat test CA")
	tests := []struct {
		name     string
		settings *ConnectorTLS
		opts     CatalogOptions
		want     string
	}{
		{"missing CA file", &ConnectorTLS{CAFile: "/nonexistent/ca.pem"}, CatalogOptions{}, "tls.caFile: "},
		{"relative CA file without data dir", &ConnectorTLS{CAFile: "ca.pem"}, CatalogOptions{}, "no data directory"},
		{"transport that cannot be configured", &ConnectorTLS{CABundle: pki.pem},
			CatalogOptions{HTTPClient: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") })}},
			"tls settings need the server's HTTP transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := upstreamConnector(TypeHTTP, "https://api.example.com", nil)
			c.TLS = tc.settings
			_, err := buildOne(t, c, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCheckConnectorTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat test CA")
	_, keyPEM, _ := pki.issue(t, "x", true)
	base := func(settings ConnectorTLS) Connector {
		return Connector{Name: "up", Type: TypeHTTP, Vendor: "in-house", TLS: &settings, HTTP: &HTTPSettings{URL: "https://api.example.com", Response: "a"}}
	}
	tests := []struct {
		name string
		c    Connector
		want []string
	}{
		{"full", base(ConnectorTLS{CABundle: pki.pem, MinVersion: "1.3", ClientCertificate: &TLSClientCertificate{Secret: "mtls-client"}}), nil},
		{"file", base(ConnectorTLS{CAFile: "/etc/moat/ca.pem", MinVersion: "1.2"}), nil},
		{"both CA sources", base(ConnectorTLS{CABundle: pki.pem, CAFile: "/etc/ca.pem"}), []string{"tls: set caBundle or caFile, not both"}},
		{"TLS 1.1", base(ConnectorTLS{MinVersion: "1.1"}), []string{"tls.minVersion: must be 1.2 or 1.3"}},
		{"TLS 1.0", base(ConnectorTLS{MinVersion: "1.0"}), []string{"tls.minVersion: "}},
		{"unknown version", base(ConnectorTLS{MinVersion: "tls13"}), []string{"tls.minVersion: "}},
		{"certificate without secret", base(ConnectorTLS{ClientCertificate: &TLSClientCertificate{}}), []string{"tls.clientCertificate.secret: is required"}},
		{"certificate bad secret name", base(ConnectorTLS{ClientCertificate: &TLSClientCertificate{Secret: "no spaces"}}), []string{"tls.clientCertificate.secret: must be a secret name"}},
		{"bundle without PEM", base(ConnectorTLS{CABundle: "not a certificate"}), []string{"tls.caBundle: the CA bundle holds no PEM certificate"}},
		{"bundle with a key", base(ConnectorTLS{CABundle: pki.pem + keyPEM}), []string{"tls.caBundle: the CA bundle's block 2 is a private key"}},
		{"bundle with a broken certificate", base(ConnectorTLS{CABundle: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}), []string{"tls.caBundle: the CA bundle's certificate 1 does not parse"}},
		{"CA file with NUL", base(ConnectorTLS{CAFile: "a\x00b"}), []string{"tls.caFile: "}},
		{"on a local connector", Connector{Name: "clf", Type: TypeLocal, Vendor: "in-house", TLS: &ConnectorTLS{}}, []string{"tls: only openai, anthropic and http connectors"}},
		{"override", func() Connector {
			c := base(ConnectorTLS{})
			c.Environments = map[string]ConnectorOverride{"prod": {TLS: &ConnectorTLS{MinVersion: "1.1"}}}
			return c
		}(), []string{"environments.prod.tls.minVersion: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := CheckConnector(tc.c)
			wantProblems(t, got, tc.want...)
			for _, p := range got {
				assertNoPEMIn(t, p, keyPEM)
			}
		})
	}
}

func TestParseClientCertificate(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t, "moat test CA")
	certPEM, keyPEM, _ := pki.issue(t, "moat-client", true)
	_, otherKey, _ := pki.issue(t, "other", true)
	keyBlock, _ := pem.Decode([]byte(keyPEM))
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(parsed.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))
	encrypted := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: ecDER}))
	tests := []struct {
		name, material, err string
	}{
		{"certificate and PKCS#8 key", certPEM + keyPEM, ""},
		{"key first, chain, comments", "# client\n" + keyPEM + certPEM + pki.pem, ""},
		{"SEC 1 key", certPEM + ecPEM, ""},
		{"no key", certPEM, "holds no PEM PRIVATE KEY"},
		{"no certificate", keyPEM, "holds no PEM CERTIFICATE"},
		{"someone else's key", certPEM + otherKey, "does not belong to the client certificate"},
		{"CA first", pki.pem + certPEM + keyPEM, "does not belong to the client certificate"},
		{"two keys", certPEM + keyPEM + otherKey, "more than one private key"},
		{"encrypted key", certPEM + encrypted, "is encrypted"},
		{"other block", certPEM + keyPEM + "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "neither a CERTIFICATE nor a PRIVATE KEY"},
		{"broken key", certPEM + "-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n-----END PRIVATE KEY-----\n", "PRIVATE KEY does not parse"},
		{"long chain", strings.Repeat(certPEM, maxCertChainLen+1) + keyPEM, "more than 10 certificates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cert, err := parseClientCertificate([]byte(tc.material))
			if tc.err == "" {
				if err != nil || cert.Leaf == nil || cert.Leaf.Subject.CommonName != "moat-client" || cert.PrivateKey == nil {
					t.Fatalf("cert %v, err %v", cert.Leaf, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			assertNoPEMIn(t, err.Error(), tc.material)
		})
	}
}

func FuzzParseClientCertificate(f *testing.F) {
	pki := newTestPKI(f, "fuzz CA")
	certPEM, keyPEM, _ := pki.issue(f, "fuzz", true)
	f.Add([]byte(certPEM + keyPEM))
	f.Add([]byte(keyPEM + certPEM + pki.pem))
	f.Add([]byte(certPEM))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := parseClientCertificate(data)
		if err != nil {
			msg := err.Error()
			for i := 0; i+16 <= len(data); i += 8 {
				if chunk := string(data[i : i+16]); !strings.ContainsAny(chunk, " \t\r\n") && !strings.HasPrefix(chunk, "-----") && strings.Contains(msg, chunk) {
					t.Fatalf("error %q repeats the input", msg)
				}
			}
			return
		}
		if cert.Leaf == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 || len(cert.Certificate) > maxCertChainLen {
			t.Fatalf("accepted an incomplete certificate: %+v", cert)
		}
	})
}

func FuzzParseCABundle(f *testing.F) {
	pki := newTestPKI(f, "fuzz CA")
	f.Add([]byte(pki.pem))
	f.Add([]byte("# comment\n" + pki.pem + "trailing"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pool, err := parseCABundle(data)
		if err == nil && pool == nil {
			t.Fatal("no pool and no error")
		}
		if err != nil && len(err.Error()) > 200 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
}

// A clone with Moat's TLS settings speaks HTTP/2 where its original would
// have (Go turns automatic HTTP/2 off for a transport with a TLS
// configuration of its own, so it is forced back on), and not where the
// original's owner had turned it off.
func TestCloneTransportTLSKeepsHTTP2(t *testing.T) {
	t.Parallel()
	dial := (&net.Dialer{}).DialContext
	for _, tc := range []struct {
		name  string
		t     *http.Transport
		force bool
	}{
		{"automatic", &http.Transport{}, true},
		{"forced", &http.Transport{ForceAttemptHTTP2: true, DialContext: dial}, true},
		{"a TLS configuration of its own", &http.Transport{TLSClientConfig: &tls.Config{}}, false},
		{"a dialer of its own", &http.Transport{DialContext: dial}, false},
		{"turned off", &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := cloneTransportTLS(tc.t, func(cfg *tls.Config) { cfg.MinVersion = tls.VersionTLS12 })
			if out.ForceAttemptHTTP2 != tc.force || out.TLSClientConfig.MinVersion != tls.VersionTLS12 {
				t.Fatalf("ForceAttemptHTTP2 %v, MinVersion %x; want %v, TLS 1.2", out.ForceAttemptHTTP2, out.TLSClientConfig.MinVersion, tc.force)
			}
		})
	}
}

// Cloning a transport another goroutine is using for the first time (as
// a reload clones http.DefaultTransport while anything may use it) is
// safe: net/http sets up HTTP/2 on first use, writing the fields a clone
// reads (a data race the race detector reported before).
func TestCloneTransportTLSWhileFirstUsed(t *testing.T) {
	t.Parallel()
	for range 20 {
		shared := &http.Transport{}
		var wg sync.WaitGroup
		wg.Go(func() { shared.Clone() })
		wg.Go(func() { cloneTransportTLS(shared, func(*tls.Config) {}) })
		wg.Wait()
	}
}
