package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// Tests of an HTTP/2 stream's cancellation while its upstream exchange
// is blocked: the stream's context is its own (serveH2Stream) and the
// pool's exchange is interrupted through the stream's requestCancel,
// by x/net/http2's cancellation (the client's RST_STREAM) and by the
// stream's timers alike.

// hangingUpstream accepts connections, reads each request's head and
// answers none: got receives once per request head, closed once per
// connection the proxy closed (EOF or error on read).
func hangingUpstream(t *testing.T) (addr string, got, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	gotc, closedc := make(chan struct{}, 16), make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				br := bufio.NewReader(c)
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						closedc <- struct{}{}
						return
					}
					if line == "\r\n" {
						gotc <- struct{}{}
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), gotc, closedc
}

// untimedRoute routes everything to cluster web with no route timeout:
// only the interruption under test ends a hanging exchange.
func untimedRoute() *config.Route {
	r := prefixRoute("/", "web")
	r.Timeout = 0
	return r
}

// waitSignal waits (bounded) for one signal on ch.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s", what)
	}
}

// TestH2ResetInterruptsUpstreamExchange: a client that resets its
// HTTP/2 stream while the proxy waits for the upstream's response
// makes the proxy close that upstream connection (the exchange cannot
// be finished) and count the downstream reset.
func TestH2ResetInterruptsUpstreamExchange(t *testing.T) {
	up, got, closed := hangingUpstream(t)
	f := start(t, []*config.Route{untimedRoute()}, nil, nil, staticCluster("web", up))
	tr := h2cTransport()
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+f.addr+"/hang", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitSignal(t, got, "request at the upstream")
	cancel() // RST_STREAM(CANCEL)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client's round trip: %v, want context.Canceled", err)
	}
	waitSignal(t, closed, "close of the upstream connection after the client's reset")
	f.waitCounter(t, "http.ingress_http.downstream_rq_rx_reset", 1)

}

// TestH2StreamTimeoutsInterruptUpstreamExchange: stream_idle_timeout
// and max_stream_duration expiring while an HTTP/2 stream waits for
// its upstream answer 408 with Envoy's bodies, and the proxy closes the
// upstream connection the exchange was blocked on.
func TestH2StreamTimeoutsInterruptUpstreamExchange(t *testing.T) {
	for _, tc := range []struct {
		name, body, counter string
		adjust              func(h *config.HTTPConnectionManager)
	}{
		{"stream_idle_timeout", "stream timeout", "http.ingress_http.downstream_rq_idle_timeout",
			func(h *config.HTTPConnectionManager) { h.StreamIdleTimeout = config.Duration(100 * time.Millisecond) }},
		{"max_stream_duration", "downstream duration timeout", "http.ingress_http.downstream_rq_max_duration_reached",
			func(h *config.HTTPConnectionManager) { h.MaxStreamDuration = config.Duration(100 * time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, got, closed := hangingUpstream(t)
			f := startWith(t, []*config.Route{untimedRoute()}, nil, nil, func(l *config.Listener) {
				tc.adjust(l.FilterChains[0].HTTP)
			}, staticCluster("web", up))
			tr := h2cTransport()
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("POST", "http://"+f.addr+"/slow", strings.NewReader("payload"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != tc.body {
				t.Fatalf("%d %q, want 408 %q", resp.StatusCode, b, tc.body)
			}
			waitSignal(t, got, "request at the upstream")
			waitSignal(t, closed, "close of the upstream connection after the timeout")
			if n := f.counter(tc.counter); n != 1 {
				t.Errorf("%s = %d, want 1", tc.counter, n)
			}
		})
	}
}
