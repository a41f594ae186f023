package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/client"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key signed by ca, as PEM.
func (ca testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writePEM(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// With --tls-cert, --tls-key and --client-ca Moat serves HTTPS only, at TLS
// 1.2 or later, to clients holding a certificate from that CA.
func TestServeMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	srvCert, srvKey := serverCA.issue(t, "moat", x509.ExtKeyUsageServerAuth)
	cfg := testConfig(t)
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCert = writePEM(t, dir, "server.pem", srvCert)
	cfg.TLSKey = writePEM(t, dir, "server.key", srvKey)
	cfg.ClientCA = writePEM(t, dir, "clients.pem", clientCA.pem)

	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ln, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	get := func(certPEM, keyPEM []byte, maxVersion uint16) (int, error) {
		tc := &tls.Config{RootCAs: roots, MaxVersion: maxVersion}
		if maxVersion != 0 {
			tc.MinVersion = tls.VersionTLS10 // the client would refuse an old version itself
		}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
		res, err := c.Get("https://" + ln.Addr().String() + "/healthz")
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}

	goodCert, goodKey := clientCA.issue(t, "operator", x509.ExtKeyUsageClientAuth)
	if code, err := get(goodCert, goodKey, 0); err != nil || code != http.StatusOK {
		t.Fatalf("with a client certificate from the CA: %d, %v", code, err)
	}
	if _, err := get(nil, nil, 0); err == nil {
		t.Error("a client without a certificate was served")
	}
	badCert, badKey := otherCA.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	if _, err := get(badCert, badKey, 0); err == nil {
		t.Error("a client with a certificate from another CA was served")
	}
	if _, err := get(goodCert, goodKey, tls.VersionTLS11); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1: %v", err)
	}
	// The CLI's client, with the files its --ca-cert, --client-cert and
	// --client-key name.
	server := "https://" + ln.Addr().String()
	caFile := writePEM(t, dir, "server-ca.pem", serverCA.pem)
	cli, err := client.NewWithTLS(server, "", client.TLSFiles{CA: caFile,
		Cert: writePEM(t, dir, "operator.pem", goodCert), Key: writePEM(t, dir, "operator.key", goodKey)})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := cli.Do(ctx, http.MethodGet, "/healthz", nil, nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("the CLI's client with its certificate: %d, %v", code, err)
	}
	noCert, err := client.NewWithTLS(server, "", client.TLSFiles{CA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCert.Do(ctx, http.MethodGet, "/healthz", nil, nil, nil); err == nil {
		t.Error("the CLI's client without a certificate was served")
	}
	if _, err := client.NewWithTLS(server, "", client.TLSFiles{Cert: caFile}); err == nil {
		t.Error("a client certificate without its key was accepted")
	}

	plain := &http.Client{Timeout: 5 * time.Second}
	if res, err := plain.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
	}
}

func TestTLSSettingsChecked(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TLSCert = "cert.pem"
	if _, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key go together") {
		t.Errorf("cert without key: %v", err)
	}
	cfg = testConfig(t)
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCert, cfg.TLSKey = filepath.Join(cfg.DataDir, "missing.pem"), filepath.Join(cfg.DataDir, "missing.key")
	a, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Listen(); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing certificate: %v", err)
	}
}
