package proxy

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// headerTimeoutListener enforces HTTP/1 request_headers_timeout the way
// Envoy does: the clock starts at the first byte of a request's headers
// and, when it runs out before the headers are complete, the client gets
// "408 Request Timeout" and the connection closes. (net/http's own
// ReadHeaderTimeout closes silently and starts counting before the first
// byte.)
type headerTimeoutListener struct {
	net.Listener
	timeout time.Duration
	onFire  func()
}

func (l *headerTimeoutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &headerTimeoutConn{Conn: c, timeout: l.timeout, onFire: l.onFire}, nil
}

// withHeaderTimeout applies request_headers_timeout to a connection the
// listener classified for this connection manager (TLS filter chains,
// chains matched by server name): HTTP/1 in plaintext or over TLS, where
// the timer watches the decrypted request and the 408 goes out
// encrypted. A TLS connection that negotiated h2 is returned as it is:
// net/http needs the *tls.Conn to serve HTTP/2, whose streams have
// timeouts of their own. Over TLS net/http then sees a plain connection,
// so the TLS facts come from connInfo (overTLS), not Request.TLS.
func (cm *connManager) withHeaderTimeout(c net.Conn) net.Conn {
	t := cm.cfg.RequestHeadersTimeout.D()
	if t <= 0 {
		return c
	}
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		return c
	}
	return &headerTimeoutConn{Conn: c, timeout: t, onFire: cm.stats.headersTimeout.Inc}
}

// headerTimeoutConn tracks whether the connection is between requests,
// reading a request's headers, or serving a request.
type headerTimeoutConn struct {
	net.Conn
	timeout time.Duration
	onFire  func()

	mu      sync.Mutex
	state   int // waitingHeaders, readingHeaders, serving, http2
	timer   *time.Timer
	started bool // first read seen (to detect the HTTP/2 preface)
}

const (
	waitingHeaders = iota
	readingHeaders
	serving
	http2Conn
)

var http2Preface = []byte("PRI * HTTP/2.0")

func (c *headerTimeoutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.started {
			c.started = true
			if bytes.HasPrefix(p[:n], http2Preface[:min(n, len(http2Preface))]) {
				// HTTP/2 has its own stream timeouts; one timer per
				// connection would be wrong for multiplexed streams.
				c.state = http2Conn
			}
		}
		if c.state == waitingHeaders {
			c.state = readingHeaders
			c.timer = time.AfterFunc(c.timeout, c.expire)
		}
		c.mu.Unlock()
	}
	return n, err
}

// headersComplete is called when the request reached the handler.
func (c *headerTimeoutConn) headersComplete() {
	c.mu.Lock()
	if c.state == readingHeaders {
		c.timer.Stop()
		c.state = serving
	}
	c.mu.Unlock()
}

// idle is called when the connection waits for its next request.
func (c *headerTimeoutConn) idle() {
	c.mu.Lock()
	if c.state == serving {
		c.state = waitingHeaders
	}
	c.mu.Unlock()
}

func (c *headerTimeoutConn) expire() {
	c.mu.Lock()
	fire := c.state == readingHeaders
	c.mu.Unlock()
	if !fire {
		return
	}
	if c.onFire != nil {
		c.onFire()
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write([]byte("HTTP/1.1 408 Request Timeout\r\ncontent-length: 15\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nrequest timeout"))
	_ = c.Conn.Close()
}
