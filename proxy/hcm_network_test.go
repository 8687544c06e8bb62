package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestNetworkFiltersAheadOfHCM: a network filter ahead of an HTTP
// connection manager sees the raw bytes both ways and may edit them
// (here it turns /secret into /public in the request and counts the
// response bytes), pause nothing, or close the connection; the
// connection manager serves HTTP/1.1 with keep-alive, h2c and HTTP over
// TLS (ALPN h2 and http/1.1) behind it, with the client's address.
func TestNetworkFiltersAheadOfHCM(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s proto=%s", r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
	})
	edit := &netHooks{
		downstream: func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool) filter.NetworkStatus {
			if bytes.Contains(b.Bytes, []byte("/evil")) {
				cb.Close("test filter")
				return filter.NetworkStopIteration
			}
			b.Bytes = bytes.ReplaceAll(b.Bytes, []byte("/secret"), []byte("/public"))
			return filter.NetworkContinue
		},
	}
	// seen records what the connection manager's streams know of their
	// connection: the client's address and whether it came over TLS.
	var mu sync.Mutex
	var seen []string
	seenHooks := &hooks{decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s tls=%v", cb.Info().DownstreamAddr.Addr(), cb.Info().DownstreamTLS != nil))
		mu.Unlock()
		return filter.HeadersContinue
	}}
	lastSeen := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	p := newPKI(t)
	hcm := func(prefix string) *config.HTTPConnectionManager {
		return &config.HTTPConnectionManager{
			StatPrefix: prefix, Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
			Routes:  &config.RouteConfig{VirtualHosts: []*config.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute("/", "web")}}}},
			Filters: []*config.HTTPFilter{{Name: "seen"}, {Name: "router", Router: true}},
		}
	}
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{
			{Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: []*config.FilterChain{
				{NetworkFilters: []*config.NetworkFilter{{Name: "edit"}}, HTTP: hcm("plain")},
			}},
			{Name: "tls", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: []*config.FilterChain{
				{TLS: downstreamTLS(p.server, "h2", "http/1.1"), NetworkFilters: []*config.NetworkFilter{{Name: "edit"}}, HTTP: hcm("tls")},
			}},
		},
		Clusters: []*config.Cluster{staticCluster("web", up)},
	}
	f := startBootstrap(t, cfg, mixedLoader{loader{"seen": seenHooks}, netLoader{"edit": edit}})
	plain, secure := f.addr, f.srv.Addr("tls")

	t.Run("HTTP/1.1 keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", plain)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i, path := range []string{"/secret", "/other"} {
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "path=" + strings.Replace(path, "secret", "public", 1) + " proto=http"
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
			}
			if got := lastSeen(); got != "127.0.0.1 tls=false" {
				t.Errorf("the connection manager saw the connection as %q", got)
			}
		}
	})
	t.Run("h2c", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: nil}
		tr.DialTLS = func(network, addr string, _ *tls.Config) (net.Conn, error) { return net.Dial(network, addr) }
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + plain + "/secret")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || !strings.HasPrefix(string(body), "path=/secret ") {
			// HPACK hides the path from a byte-level edit: only HTTP/1 is rewritten.
			t.Errorf("got %s %q, want HTTP/2 and the path as sent", resp.Proto, body)
		}
	})
	for _, alpn := range []string{"h2", "http/1.1"} {
		t.Run("TLS "+alpn, func(t *testing.T) {
			tlsCfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "proxy.example.com", NextProtos: []string{alpn}}
			var rt http.RoundTripper = &http.Transport{TLSClientConfig: tlsCfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			if alpn == "h2" {
				rt = &http2.Transport{TLSClientConfig: tlsCfg}
			}
			defer rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get("https://" + secure + "/secret")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantPath := "/public"
			if alpn == "h2" {
				wantPath = "/secret"
			}
			if want := "path=" + wantPath + " proto=https"; string(body) != want {
				t.Errorf("got %q, want %q (the filter sees decrypted bytes; TLS still known to the connection manager)", body, want)
			}
			if got := lastSeen(); got != "127.0.0.1 tls=true" {
				t.Errorf("the connection manager saw the connection as %q", got)
			}
		})
	}
	t.Run("filter closes the connection", func(t *testing.T) {
		if got := exchange(t, plain, "GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
			t.Errorf("got %q, want the connection closed", got)
		}
	})
	if got := f.counter("http.plain.downstream_cx_total"); got < 3 {
		t.Errorf("http.plain.downstream_cx_total = %d, want each connection counted", got)
	}
	if n := f.counter("tcp.hcm.downstream_cx_total"); n != 0 {
		t.Errorf("tcp.hcm.* stats leaked into the proxy's: %d", n)
	}
	ev := strings.Join(edit.events(), " ")
	if !strings.Contains(ev, "new") || !strings.Contains(ev, "up(") || !strings.Contains(ev, "downclose") {
		t.Errorf("the network filter missed callbacks: %s", ev)
	}
}

// mixedLoader hands out native HTTP filters and native network filters.
type mixedLoader struct {
	loader
	netLoader
}

func (m mixedLoader) LoadHTTPFilter(ctx context.Context, listener string, f *config.HTTPFilter) (filter.Factory, error) {
	return m.loader.LoadHTTPFilter(ctx, listener, f)
}
