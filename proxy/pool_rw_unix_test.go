//go:build unix

package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/stats"
)

// TestPoolDeferredWriteShortFallsBack: a request written inside its
// response's first read (writeThenRead) that the socket cannot take
// whole, with send and receive buffers at their minimum and the
// upstream not reading yet, is finished by an ordinary blocking write:
// the upstream gets it intact, the response is read, and the
// connection serves the next request.
func TestPoolDeferredWriteShortFallsBack(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	release := make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(release) }) }
	testHookShortWrite.Store(&hook)
	defer testHookShortWrite.Store(nil)
	got := make(chan string, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		<-release // the proxy's write is short before anything is read
		br := bufio.NewReader(c)
		for {
			var req http1.Request
			if err := http1.ReadRequest(br, http1.Limits{}, &req); err != nil {
				return
			}
			b, err := io.ReadAll(http1.NewBodyReader(br, &req, http1.Limits{}))
			if err != nil {
				return
			}
			got <- string(b)
			if _, err := io.WriteString(c, okResponse("got "+itoa(len(b)))); err != nil {
				return
			}
		}
	}()
	gauge := stats.New().Gauge("cx_active")
	var dials atomic.Int32
	pool := newH1Pool(func(ctx context.Context, a string) (net.Conn, net.Conn, error) {
		dials.Add(1)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		if err != nil {
			return nil, nil, err
		}
		if err := c.(*net.TCPConn).SetWriteBuffer(1); err != nil {
			return nil, nil, err
		}
		return &countedConn{Conn: c, active: gauge}, c, nil
	}, newPoolStats(stats.New(), "cluster.t."))
	t.Cleanup(pool.close)
	for i, size := range []int{coalesceBodyLimit, 100} {
		body := strings.Repeat(string(rune('a'+i)), size)
		req := (&http.Request{
			Method: "POST", URL: &url.URL{Scheme: "http", Host: ln.Addr().String(), Opaque: "/"},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Host: "example.com",
			ContentLength: int64(size), Body: &sliceReader{b: []byte(body)},
		}).WithContext(context.Background())
		resp, err := pool.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "got "+itoa(size) {
			t.Fatalf("request %d: response %q, %v", i, b, err)
		}
		if up := <-got; up != body {
			t.Fatalf("request %d: the upstream got %d bytes, want the %d sent", i, len(up), size)
		}
		if i == 0 {
			select {
			case <-release:
			default:
				t.Fatal("the first request's write was not short: the fallback was not exercised")
			}
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("%d connections dialled, want one, reused", got)
	}
}
