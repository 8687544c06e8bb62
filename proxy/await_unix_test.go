//go:build unix

package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// awaitPair is a connection as the pool holds one (plain TCP, its raw
// socket) and the upstream's end of it.
func awaitPair(t *testing.T) (*h1Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	tc := cli.(*net.TCPConn)
	c := &h1Conn{conn: tc, vw: tc, plain: true}
	if c.raw, err = tc.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	c.awaitFn = c.await
	return c, srv.(*net.TCPConn)
}

// TestWriteAwait: the request leaves whole, writeAwait returns once the
// answer can be read (or the wait ended), and what ends it — an answer,
// a deadline, a close, a reset — reaches the caller as a plain write
// and read would report it.
func TestWriteAwait(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
	cases := []struct {
		name string
		size int // request bytes
		// upstream runs as the upstream's end: it gets the request's
		// bytes as they arrive (nil: it reads nothing).
		upstream func(t *testing.T, c *h1Conn, srv *net.TCPConn, req []byte)
		before   func(t *testing.T, c *h1Conn, srv *net.TCPConn) // before writeAwait
		wantErr  func(error) bool                                // writeAwait's error (nil func: none)
		readErr  func(error) bool                                // the read after it (nil func: reads answer)
	}{
		{
			name: "answered", size: 200,
			upstream: func(t *testing.T, c *h1Conn, srv *net.TCPConn, req []byte) {
				readFull(t, srv, req)
				io.WriteString(srv, answer)
			},
		},
		{
			// More than the sockets' buffers take at once: the write
			// waits for the upstream to read, inside the callback.
			name: "write larger than the buffers", size: 16 << 20,
			upstream: func(t *testing.T, c *h1Conn, srv *net.TCPConn, req []byte) {
				readFull(t, srv, req)
				io.WriteString(srv, answer)
			},
		},
		{
			name: "deadline while waiting", size: 200,
			before: func(t *testing.T, c *h1Conn, srv *net.TCPConn) {
				c.conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
			},
			upstream: func(t *testing.T, c *h1Conn, srv *net.TCPConn, req []byte) { readFull(t, srv, req) },
			readErr:  func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) },
		},
		{
			name: "deadline passed before", size: 200,
			before: func(t *testing.T, c *h1Conn, srv *net.TCPConn) {
				c.conn.SetDeadline(time.Now().Add(-time.Second))
			},
			wantErr: func(err error) bool {
				var oe *net.OpError
				return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &oe) && oe.Op == "write"
			},
		},
		{
			name: "closed while waiting", size: 200,
			upstream: func(t *testing.T, c *h1Conn, srv *net.TCPConn, req []byte) {
				readFull(t, srv, req)
				c.conn.Close() // as a request's cancel does
			},
			readErr: func(err error) bool { return errors.Is(err, net.ErrClosed) },
		},
		{
			name: "reset by the upstream before", size: 200,
			before: func(t *testing.T, c *h1Conn, srv *net.TCPConn) {
				srv.SetLinger(0)
				srv.Close() // a reset
				// Wait until the reset arrived: the socket reads it.
				var b [1]byte
				c.conn.SetReadDeadline(time.Now().Add(time.Minute))
				if _, err := c.conn.Read(b[:]); err == nil {
					t.Fatal("read data from a reset connection")
				}
				c.conn.SetReadDeadline(time.Time{})
			},
			wantErr: func(err error) bool {
				var oe *net.OpError
				return (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) &&
					errors.As(err, &oe) && oe.Op == "write"
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := awaitPair(t)
			if tc.before != nil {
				tc.before(t, c, srv)
			}
			req := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if tc.upstream != nil {
					tc.upstream(t, c, srv, req)
				}
			}()
			err := c.writeAwait(req)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("writeAwait: %v, not the error wanted", err)
				}
				<-done
				return
			}
			if err != nil {
				t.Fatalf("writeAwait: %v", err)
			}
			<-done
			buf := make([]byte, len(answer))
			_, err = io.ReadFull(c.conn, buf)
			if tc.readErr != nil {
				if err == nil || !tc.readErr(err) {
					t.Fatalf("read after writeAwait: %v, not the error wanted", err)
				}
				return
			}
			if err != nil || string(buf) != answer {
				t.Fatalf("read after writeAwait: %q, %v", buf, err)
			}
		})
	}
}

// readFull reads exactly want from srv and checks it arrived intact.
func readFull(t *testing.T, srv *net.TCPConn, want []byte) {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Errorf("upstream read: %v", err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("upstream got %d bytes, not the request's", len(got))
	}
}
