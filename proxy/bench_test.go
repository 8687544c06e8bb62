package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// The benchmarks measure the proxy's own data path around its filter
// chain: requests (and TCP data) through native filters that continue
// everything, over loopback connections the client keeps open. What the
// filters cost is nothing; what is measured is the chain, the stream and
// the codec. Compare allocs/op between versions: the time on a shared
// machine is noisier.

// passFilter continues everything.
type passFilter struct{}

func (passFilter) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passFilter) DecodeData(*filter.Buffer, bool) filter.DataStatus { return filter.DataContinue }
func (passFilter) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passFilter) EncodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passFilter) EncodeData(*filter.Buffer, bool) filter.DataStatus { return filter.DataContinue }
func (passFilter) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passFilter) OnLog()                                {}
func (passFilter) OnDestroy()                            {}
func (passFilter) OnNewConnection() filter.NetworkStatus { return filter.NetworkContinue }
func (passFilter) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}
func (passFilter) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}
func (passFilter) OnUpstreamClose(filter.PeerType)   {}
func (passFilter) OnDownstreamClose(filter.PeerType) {}

type passLoader struct{}

func (passLoader) NewStreamFilter(filter.Callbacks) filter.StreamFilter { return passFilter{} }
func (passLoader) NewNetworkFilter(filter.NetworkCallbacks) filter.NetworkFilter {
	return passFilter{}
}

func (passLoader) LoadHTTPFilter(context.Context, string, *config.HTTPFilter) (filter.Factory, error) {
	return passLoader{}, nil
}

func (passLoader) LoadNetworkFilter(context.Context, string, *config.NetworkFilter) (filter.NetworkFactory, error) {
	return passLoader{}, nil
}

// BenchmarkHTTPFilterChain sends POST requests with a 1 KiB body through
// three filters: "direct" to a direct_response route (the reply runs
// through the response filters), "upstream" to a loopback service that
// answers 1 KiB.
func BenchmarkHTTPFilterChain(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	up := upstream(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write(body)
	})
	direct := &config.Route{Match: config.RouteMatch{Prefix: "/", CaseSensitive: true},
		DirectResponse: &config.DirectResponse{Status: 200, Body: body}}
	for _, bc := range []struct {
		name  string
		route *config.Route
		// accessLog adds an access_log to a file in Envoy's default
		// format: the "+log" variants against their plain ones.
		accessLog bool
		// trace adds OpenTelemetry tracing exported over OTLP/gRPC to a
		// receiver in the benchmark, at this random_sampling percentage,
		// with an upstream span per request: "+trace" samples every
		// request, "+trace0" none (the context is still propagated).
		trace   bool
		percent float64
	}{
		{"direct", direct, false, false, 0},
		{"direct+log", direct, true, false, 0},
		{"upstream", prefixRoute("/", "svc"), false, false, 0},
		{"upstream+log", prefixRoute("/", "svc"), true, false, 0},
		{"upstream+trace", prefixRoute("/", "svc"), false, true, 100},
		{"upstream+trace0", prefixRoute("/", "svc"), false, true, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var hf []*config.HTTPFilter
			for _, name := range []string{"a", "b", "c"} {
				hf = append(hf, &config.HTTPFilter{Name: name})
			}
			hf = append(hf, &config.HTTPFilter{Name: "envoy.filters.http.router", Router: true})
			var logs []*config.AccessLog
			if bc.accessLog {
				logs = []*config.AccessLog{{Name: "envoy.access_loggers.file", Path: filepath.Join(b.TempDir(), "access.log")}}
			}
			clusters := []*config.Cluster{staticCluster("svc", up)}
			var tr *config.Tracing
			if bc.trace {
				_, collector := startOTLPGRPC(b)
				c := staticCluster("collector", collector)
				c.HTTP2 = true
				clusters = append(clusters, c)
				tr = &config.Tracing{RandomSampling: bc.percent, ClientSampling: 100, OverallSampling: 100, SpawnUpstreamSpan: true, MaxPathTagLength: 256,
					Provider: &config.TracingProvider{Name: "envoy.tracers.opentelemetry", OpenTelemetry: &config.OpenTelemetryTracer{GRPCCluster: "collector", ServiceName: "bench"}}}
			}
			f := startBootstrap(b, &config.Bootstrap{
				Listeners: []*config.Listener{{
					Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20,
					FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
						StatPrefix: "ingress_http", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
						Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
							{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{bc.route}},
						}},
						Filters:    hf,
						AccessLogs: logs,
						Tracing:    tr,
					}}},
				}},
				Clusters: clusters,
			}, passLoader{})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			url := "http://" + f.addr + "/bench"
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Post(url, "text/plain", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(body)) {
					b.Fatalf("status %d, %d body bytes", resp.StatusCode, n)
				}
			}
		})
	}
}

// BenchmarkTCPFilterChain echoes 16 KiB per op through two network
// filters and a tcp_proxy on one connection.
func BenchmarkTCPFilterChain(b *testing.B) {
	echo := echoUpstream(b)
	chain := tcpChain("echo", "a", "b")
	f := startBootstrap(b, &config.Bootstrap{
		Listeners: []*config.Listener{{Name: "main", Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{chain}}},
		Clusters:  []*config.Cluster{staticCluster("echo", echo)},
	}, passLoader{})
	c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := []byte(strings.Repeat("y", 16<<10))
	got := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}

// benchBody is bench/run.sh's POST body (bench/post.lua).
const benchBody = `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`

// proxiedRequests are the requests of BenchmarkProxiedRequest and
// TestProxiedRequestAllocs: bench/run.sh's keep-alive GET, and its POST
// of the 52-byte JSON body.
var proxiedRequests = []struct{ name, req string }{
	{"GET", "GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"},
	{"POST", "POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(benchBody)) + "\r\n\r\n" + benchBody},
}

// startProxiedRequestProxy starts a proxy (router only, the route's
// default timeout) in front of a testnet.FixedUpstream and returns its address.
// The connection manager has the timeouts Envoy's defaults give
// bench/run.sh's YAML (config.Build fills them in; this literal does
// not go through it): idle_timeout 1 h and stream_idle_timeout 5 min,
// whose timers are part of every request's cost.
func startProxiedRequestProxy(tb testing.TB) string {
	up := testnet.FixedUpstream(tb)
	f := startBootstrap(tb, &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "main", Address: "127.0.0.1:0",
			FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
				StatPrefix: "ingress_http", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
				IdleTimeout: config.Duration(time.Hour), StreamIdleTimeout: config.Duration(5 * time.Minute),
				Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
					{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute("/", "svc")}},
				}},
				Filters: []*config.HTTPFilter{{Name: "envoy.filters.http.router", Router: true}},
			}}},
		}},
		Clusters: []*config.Cluster{staticCluster("svc", up)},
	}, passLoader{})
	return f.addr
}

// rawRoundTrip opens a keep-alive connection to addr and returns a
// function that sends req on it and reads the testnet.FixedUpstream's response
// through the proxy, allocating nothing itself.
func rawRoundTrip(tb testing.TB, addr, req string) func() {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	br := bufio.NewReaderSize(c, 4<<10)
	b := []byte(req)
	return func() {
		if _, err := c.Write(b); err != nil {
			tb.Fatal(err)
		}
		n, err := testnet.ReadHead(br)
		if err != nil {
			tb.Fatal(err)
		}
		if n != len("hello from the server") {
			tb.Fatalf("response body of %d bytes", n)
		}
		if _, err := br.Discard(n); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkProxiedRequest is one whole proxied request of bench/run.sh's
// shape over loopback: a keep-alive GET, and a POST of the 52-byte JSON
// body, from a raw-socket client through the proxy (router only) to a
// raw-socket upstream. Neither end allocates per request, so allocs/op
// is what the proxy allocates per request.
func BenchmarkProxiedRequest(b *testing.B) {
	addr := startProxiedRequestProxy(b)
	for _, bc := range proxiedRequests {
		b.Run(bc.name, func(b *testing.B) {
			roundTrip := rawRoundTrip(b, addr, bc.req)
			roundTrip() // the upstream connection is open from here on
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				roundTrip()
			}
		})
	}
}
