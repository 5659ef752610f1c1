package api

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// listen binds the API's address. With a certificate configured it loads
// it first, so that a missing or mismatched one stops Start, and returns a
// tlsListener: newLimitListener then puts TLS over each connection it
// admits.
func (s *Server) listen() (net.Listener, error) {
	var config *tls.Config
	switch cert, key := s.cfg.TLSCert, s.cfg.TLSKey; {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, errors.New("TLS needs both a certificate and its key (api.tls_cert, api.tls_key), or neither")
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate (api.tls_cert %s, api.tls_key %s): %w", cert, key, err)
		}
		config = &tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   tls.VersionTLS12,
			// HTTP/1.1 alone: the read deadlines and the connection cap
			// that bound slow and greedy clients are written for it; an
			// HTTP/2 connection would multiplex past them.
			NextProtos: []string{"http/1.1"},
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil || config == nil {
		return ln, err
	}
	s.log.Info("api serves HTTPS only", "cert", s.cfg.TLSCert)
	return &tlsListener{Listener: ln, config: config}, nil
}

// tlsListener is a bound listener whose connections are to speak TLS. It
// hands out plain connections: TLS goes over them in newLimitListener, so
// that the cap counts TCP connections (a handshake in progress holds a
// slot), and so that net/http sees each *tls.Conn itself, which it needs to
// bound the handshake by its read timeouts and to set Request.TLS.
type tlsListener struct {
	net.Listener
	config *tls.Config
}
