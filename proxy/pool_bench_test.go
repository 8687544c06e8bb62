package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/stats"
)

// fixedUpstream answers every request head it reads (bodiless requests)
// with resp, allocating nothing per request, so that a benchmark's
// allocs/op are the client side's.
func fixedUpstream(b *testing.B, resp []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						have = copy(buf, buf[i+4:have])
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkUpstreamRoundTrip is one keep-alive GET of the router's
// request shape answered with 1 KiB, over loopback: our pool and codec
// side by side with net/http's Transport (the previous upstream path).
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	addr := fixedUpstream(b, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sat, 05 Dec 2026 15:00:00 GMT\r\nContent-Length: 1024\r\n\r\n"+body))
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	st := stats.New()
	pool := newH1Pool(func(ctx context.Context, a string) (net.Conn, net.Conn, error) {
		c, err := dialer.DialContext(ctx, "tcp", a)
		return c, c, err
	}, newPoolStats(st, "cluster.bench."))
	b.Cleanup(pool.close)
	netTransport := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	b.Cleanup(netTransport.CloseIdleConnections)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"pool", pool}, {"net-http", netTransport}} {
		b.Run(bc.name, func(b *testing.B) {
			req := (&http.Request{
				Method: "GET",
				URL:    &url.URL{Scheme: "http", Host: addr, Opaque: "/bench?x=1"},
				Proto:  "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{
					"User-Agent":        {"wrk"},
					"Accept":            {"*/*"},
					"X-Forwarded-Proto": {"http"},
					"X-Request-Id":      {"0b6b6f2e-4a53-4c3e-9a1f-6d1c1f5e9b7a"},
				},
				Host: "example.com",
			}).WithContext(context.Background())
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					m, err := resp.Body.Read(buf)
					n += m
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || n != 1024 {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}
