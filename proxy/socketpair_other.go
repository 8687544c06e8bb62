//go:build !unix

package proxy

import (
	"errors"
	"net"
)

// socketPair is only available on Unix systems, which run network
// filters ahead of an HTTP connection manager over a socket pair.
func socketPair() (net.Conn, net.Conn, error) {
	return nil, nil, errors.New("network filters ahead of an HTTP connection manager need a Unix system (socket pairs)")
}
