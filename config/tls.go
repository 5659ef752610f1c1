package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLS is how a process reaches a server over TLS (amqp_tls, redis_tls): whom
// to trust, what certificate to show, what name to expect. It applies to
// amqps:// and rediss:// URLs; the zero value means the system's CAs, no
// client certificate and the URL's host.
type TLS struct {
	// CAFile is a PEM file of the CAs that sign the server's certificate
	// (ca_file, WARREN_*_TLS_CA_FILE); empty means the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are PEM files of a client certificate and its
	// key, for a server that asks for one (cert_file, key_file,
	// WARREN_*_TLS_CERT_FILE, WARREN_*_TLS_KEY_FILE); both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must bear
	// (server_name, WARREN_*_TLS_SERVER_NAME); empty means the URL's host.
	ServerName string `yaml:"server_name"`
}

// IsZero reports whether nothing of t is set.
func (t TLS) IsZero() bool { return t == TLS{} }

// AMQPTLSConfig returns the TLS configuration of amqps:// connections, to
// RabbitMQ and to its management API, or nil when amqp_tls is not set.
func (c *Config) AMQPTLSConfig() (*tls.Config, error) { return c.AMQPTLS.clientConfig("amqp_tls") }

// RedisTLSConfig returns the TLS configuration of rediss:// connections, or
// nil when redis_tls is not set.
func (c *Config) RedisTLSConfig() (*tls.Config, error) { return c.RedisTLS.clientConfig("redis_tls") }

// APIClientTLSConfig returns the TLS configuration of the client commands'
// connections to an https API, or nil when api_ca_file is not set.
func (c *Config) APIClientTLSConfig() (*tls.Config, error) {
	if c.APICAFile == "" {
		return nil, nil
	}
	pool, err := certPool(c.APICAFile)
	if err != nil {
		return nil, fmt.Errorf("api_ca_file: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// clientConfig reads t's files into a client's *tls.Config; errors name the
// settings under key.
func (t TLS) clientConfig(key string) (*tls.Config, error) {
	if t.IsZero() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := certPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", key, err)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file and %s.key_file: %w", key, key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// certPool reads a PEM file of CA certificates.
func certPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// validateTLS reports TLS settings that cannot work: half a key pair, or
// TLS settings for a URL that would not use them (a connection meant to be
// private would then go in clear text).
func (c *Config) validateTLS() error {
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		return errors.New("api.tls_cert and api.tls_key: set both (the API then serves HTTPS only) or neither")
	}
	for _, s := range []struct {
		key, url, scheme string
		t                TLS
	}{
		{"amqp_tls", c.AMQPURL, "amqps", c.AMQPTLS},
		{"redis_tls", c.RedisURL, "rediss", c.RedisTLS},
	} {
		if (s.t.CertFile == "") != (s.t.KeyFile == "") {
			return fmt.Errorf("%s.cert_file and %s.key_file: set both or neither", s.key, s.key)
		}
		// The scheme alone: parsing the URL could put its password in
		// an error.
		if !s.t.IsZero() && !strings.HasPrefix(strings.ToLower(s.url), s.scheme+"://") {
			return fmt.Errorf("%s is set, but the URL is not %s://: the connection would not use TLS", s.key, s.scheme)
		}
	}
	return nil
}
