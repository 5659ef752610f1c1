package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are certificates a test made for itself, as PEM files in a
// directory of its own: a CA, a server certificate it signed for
// 127.0.0.1, ::1 and localhost, and a client certificate it signed.
type Certs struct {
	// Dir holds the files.
	Dir string
	// CAFile is the CA's certificate: what clients and servers trust.
	CAFile string
	// ServerCertFile and ServerKeyFile are the server's certificate and
	// key; the certificate is valid for 127.0.0.1, ::1 and localhost.
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate (common
	// name "warren-test-client") and its key.
	ClientCertFile, ClientKeyFile string
	// CA is the CA's certificate, parsed.
	CA *x509.Certificate
}

// NewCerts makes a CA, a server and a client certificate, valid for a day,
// and writes them to a temporary directory removed when the test ends.
// Each call makes another CA: one set's certificates are strangers to
// another's, for tests of a wrong CA.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	// Readable by the rabbitmq user a private node runs as, which copies
	// what it needs.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Certs{
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.pem"),
		ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile:  filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client.key"),
	}
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "warren test CA " + randomHex(4)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("make a CA certificate: %v", err)
	}
	if c.CA, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	writePEM(t, c.CAFile, "CERTIFICATE", caDER)

	leaf := func(certFile, keyFile string, tmpl *x509.Certificate) {
		key := newKey(t)
		tmpl.SerialNumber = serial(t)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, c.CA, &key.PublicKey, caKey)
		if err != nil {
			t.Fatalf("make a certificate: %v", err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	}
	leaf(c.ServerCertFile, c.ServerKeyFile, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	leaf(c.ClientCertFile, c.ClientKeyFile, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "warren-test-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return c
}

// ClientTLS returns a client's TLS configuration that trusts the CA and
// shows the client certificate.
func (c *Certs) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, err := c.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (c *Certs) clientConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.CA)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("make a key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writePEM writes one PEM block; keys are readable by their owner alone.
func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	mode := os.FileMode(0o644)
	if kind == "PRIVATE KEY" {
		mode = 0o600
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
