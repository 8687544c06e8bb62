package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// named is an upstream answering its name; /slow signals started (when
// not nil), then waits for release.
func named(t *testing.T, name string, release <-chan struct{}, started chan<- struct{}) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			if started != nil {
				started <- struct{}{}
			}
			<-release
		}
		io.WriteString(w, name)
	})
}

// keptClient does requests on one kept-alive connection and reports
// whether each reused it.
type keptClient struct {
	t      *testing.T
	client *http.Client
}

func newKeptClient(t *testing.T) *keptClient {
	tr := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &keptClient{t: t, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (k *keptClient) get(url string) (body string, reused bool) {
	k.t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	resp, err := k.client.Do(req)
	if err != nil {
		k.t.Error(err)
		return "", false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), reused
}

func reloadServer(t *testing.T, cfg *config.Bootstrap, l FilterLoader) *Server {
	t.Helper()
	srv, err := New(context.Background(), cfg, Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New(), Loader: l, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

func waitReleased(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never released", what)
	}
}

// TestReloadRoutesAndClusters: a reload that changes routes and
// clusters keeps the listener's connections; new streams take the new
// route and the new cluster objects; a stream in flight finishes on the
// old cluster, which is closed after it; nothing leaks.
func TestReloadRoutesAndClusters(t *testing.T) {
	base := runtime.NumGoroutine()
	slow := make(chan struct{})
	slowStarted := make(chan struct{}, 1)
	a, b, c := named(t, "a", slow, slowStarted), named(t, "b", slow, nil), named(t, "c", slow, nil)
	var closeSlow sync.Once
	t.Cleanup(func() { closeSlow.Do(func() { close(slow) }) })
	cfg1 := swapConfig(a, "/", "v1")
	l := &releasingLoader{}
	srv := reloadServer(t, cfg1, l)
	url := "http://" + srv.Addr("main")
	kc := newKeptClient(t)
	if got, _ := kc.get(url + "/"); got != "a" {
		t.Fatalf("before: %q", got)
	}
	oldUp := srv.currentClusters()["up"]

	// A slow stream on cluster "up" (a) in flight across the reload, on a
	// second connection.
	inFlight := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/slow")
		if err != nil {
			inFlight <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inFlight <- string(body)
	}()
	select { // the stream is in flight once it reached the upstream
	case <-slowStarted:
	case got := <-inFlight:
		t.Fatalf("the slow request ended before the reload: %q", got)
	}

	// /b goes to a new cluster; "up" now points at c.
	cfg2 := swapConfig(c, "/", "v1")
	vh := cfg2.Listeners[0].FilterChains[0].HTTP.Routes.VirtualHosts[0]
	vh.Routes = append([]*config.Route{prefixRoute("/b", "bee")}, vh.Routes...)
	cfg2.Clusters = append(cfg2.Clusters, staticCluster("bee", b))
	res, err := srv.Reload(context.Background(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Summary(), ","); got != "routes main/0,cluster+ bee,cluster~ up" {
		t.Fatalf("plan: %s", got)
	}
	if got, reused := kc.get(url + "/b"); got != "b" || !reused {
		t.Fatalf("new route: %q (connection reused: %v)", got, reused)
	}
	if got, reused := kc.get(url + "/"); got != "c" || !reused {
		t.Fatalf("changed cluster: %q (connection reused: %v)", got, reused)
	}
	select {
	case <-res.Released:
		t.Fatal("released while a stream still uses the old cluster")
	case <-oldUp.stop:
		t.Fatal("old cluster closed while a stream uses it")
	case <-time.After(100 * time.Millisecond):
	}
	closeSlow.Do(func() { close(slow) })
	if got := <-inFlight; got != "a" {
		t.Fatalf("in-flight stream: %q, want a (the old cluster)", got)
	}
	waitReleased(t, res.Released, "the old routes and cluster")
	select {
	case <-oldUp.stop:
	default:
		t.Fatal("old cluster not closed")
	}
	if l.releases() != "" {
		t.Fatalf("filters released though unchanged: %q", l.releases())
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Back to where it started plus the three upstreams' accept loops.
	waitGoroutines(t, base+3, func() {
		kc.client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
	})
}

// TestReloadListeners: an added listener binds and serves; a removed one
// stops accepting while its in-flight stream finishes; a changed one on
// the same address takes over the socket (no connection refused while a
// client keeps dialing) and the old one drains; an unchanged listener's
// kept-alive connection survives all of it.
func TestReloadListeners(t *testing.T) {
	slow := make(chan struct{})
	slowStarted := make(chan struct{}, 1)
	up := named(t, "up", slow, slowStarted)
	var closeSlow sync.Once
	t.Cleanup(func() { closeSlow.Do(func() { close(slow) }) }) // before the upstream closes
	l := &releasingLoader{}
	cfg1 := swapConfig(up, "/", "v1")
	cfg1.Listeners = append(cfg1.Listeners, &config.Listener{Name: "other", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20,
		FilterChains: swapConfig(up, "/", "v2").Listeners[0].FilterChains})
	srv := reloadServer(t, cfg1, l)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	mainURL := "http://" + srv.Addr("main")
	otherAddr := srv.Addr("other")
	kc := newKeptClient(t)
	kc.get(mainURL + "/")

	// Add "extra" (on a port of its own).
	cfg2 := swapConfig(up, "/", "v1")
	cfg2.Listeners = append(cfg2.Listeners, cfg1.Listeners[1],
		&config.Listener{Name: "extra", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: swapConfig(up, "/", "v3").Listeners[0].FilterChains})
	res, err := srv.Reload(context.Background(), cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Summary(), ","); got != "listener+ extra" {
		t.Fatalf("plan: %s", got)
	}
	extraAddr := srv.Addr("extra")
	resp, err := http.Get("http://" + extraAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("x-version") != "v3" {
		t.Fatalf("extra answered with %q", resp.Header.Get("x-version"))
	}
	if _, reused := kc.get(mainURL + "/"); !reused {
		t.Fatal("the unchanged listener's connection was not kept")
	}

	// Remove "extra" with a stream in flight on it; change "other"
	// (buffer limit) on the same address while a client keeps dialing.
	inFlight := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + extraAddr + "/slow")
		if err != nil {
			inFlight <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inFlight <- string(b)
	}()
	select { // the stream is in flight once it reached the upstream
	case <-slowStarted:
	case got := <-inFlight:
		t.Fatalf("the slow request ended before the reload: %q", got)
	}
	var dials, refused atomic.Int64
	var firstFailure atomic.Value
	stopDial := make(chan struct{})
	dialDone := make(chan struct{})
	go func() {
		defer close(dialDone)
		for {
			select {
			case <-stopDial:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", otherAddr, time.Second)
			dials.Add(1)
			if err != nil {
				refused.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
				continue
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			b, _ := io.ReadAll(c)
			c.Close()
			if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
				refused.Add(1)
				firstFailure.CompareAndSwap(nil, "answer: "+string(b))
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	cfg3 := swapConfig(up, "/", "v1")
	changed := *cfg1.Listeners[1]
	changed.Address = otherAddr
	changed.PerConnectionBufferLimitBytes = 1 << 19
	cfg3.Listeners = append(cfg3.Listeners, &changed)
	res, err = srv.Reload(context.Background(), cfg3)
	time.Sleep(50 * time.Millisecond)
	close(stopDial)
	<-dialDone
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Plan.Summary(), ","); got != "listener~ other,listener- extra" {
		t.Fatalf("plan: %s", got)
	}
	if refused.Load() != 0 || dials.Load() < 5 {
		t.Fatalf("%d of %d connections to the changed listener failed (%v)", refused.Load(), dials.Load(), firstFailure.Load())
	}
	if srv.Addr("other") != otherAddr {
		t.Fatalf("changed listener moved: %s", srv.Addr("other"))
	}
	if c, err := net.DialTimeout("tcp", extraAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("the removed listener still accepts")
	}
	select {
	case <-res.Released:
		t.Fatal("released while a stream is in flight on the removed listener")
	case <-time.After(50 * time.Millisecond):
	}
	closeSlow.Do(func() { close(slow) })
	if got := <-inFlight; got != "up" {
		t.Fatalf("in-flight stream on the removed listener: %q", got)
	}
	waitReleased(t, res.Released, "the removed and changed listeners")
	if got := l.releases(); got != "v2,v3" && got != "v3,v2" {
		t.Fatalf("released %q, want the old v2 (changed listener) and v3 (removed)", got)
	}
	if _, reused := kc.get(mainURL + "/"); !reused {
		t.Fatal("the unchanged listener's connection was not kept")
	}
}

// TestReloadAllOrNothing: a reload whose new pieces fail (a filter that
// does not load, an address in use) changes nothing: the old routes,
// clusters and listeners keep serving and what was built is released.
func TestReloadAllOrNothing(t *testing.T) {
	a, b := named(t, "a", nil, nil), named(t, "b", nil, nil)
	l := &releasingLoader{}
	srv := reloadServer(t, swapConfig(a, "/", "v1"), l)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	url := "http://" + srv.Addr("main")
	kc := newKeptClient(t)
	kc.get(url + "/")
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	bad := map[string]*config.Bootstrap{}
	// The cluster and route change would apply, but a new filter fails.
	c1 := swapConfig(b, "/", "v2", "broken")
	bad["filter"] = c1
	// The cluster changes and a listener is added on a busy address.
	c2 := swapConfig(b, "/", "v1")
	c2.Listeners = append(c2.Listeners, &config.Listener{Name: "extra", Address: busy.Addr().String(), FilterChains: swapConfig(b, "/", "v4").Listeners[0].FilterChains})
	bad["bind"] = c2
	// A route names a cluster that does not exist.
	c3 := swapConfig(a, "/", "v1")
	c3.Listeners[0].FilterChains[0].HTTP.Routes.VirtualHosts[0].Routes[0].Cluster = "nope"
	bad["route"] = c3
	want := map[string]string{"filter": `"broken" does not load`, "bind": "address already in use", "route": `unknown cluster "nope"`}
	for _, name := range []string{"filter", "bind", "route"} {
		cfg := bad[name]
		if _, err := srv.Reload(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), want[name]) {
			t.Fatalf("%s: err %v, want %q", name, err, want[name])
		}
		if got, reused := kc.get(url + "/"); got != "a" || !reused {
			t.Fatalf("after the failed %s reload: %q (connection kept: %v)", name, got, reused)
		}
	}
	if got := l.releases(); got != "v2,v4" {
		t.Fatalf("released %q, want the half-built v2 and v4", got)
	}
	if n := len(srv.ListenerStatuses()); n != 1 {
		t.Fatalf("%d listeners after failed reloads", n)
	}
}

// closingLoader hands out network filters that count their Close (how
// the server releases a factory); names other than "ok" fail to load.
type closingLoader struct {
	netLoader
	loaded, closed atomic.Int32
}

type closingFactory struct {
	netFactory
	l *closingLoader
}

func (f *closingFactory) Close() error { f.l.closed.Add(1); return nil }

func (l *closingLoader) LoadNetworkFilter(_ context.Context, _ string, f *config.NetworkFilter) (filter.NetworkFactory, error) {
	if f.Name != "ok" {
		return nil, fmt.Errorf("no test network filter %q", f.Name)
	}
	l.loaded.Add(1)
	return &closingFactory{netFactory{&netHooks{}}, l}, nil
}

// TestNetworkFiltersClosed: the network filters of a listener are closed
// once: when a reload removed it and it drained, and when a later chain
// of the same listener failed to build (they used to stay loaded).
func TestNetworkFiltersClosed(t *testing.T) {
	up := echoUpstream(t)
	tcpListener := func(filters ...string) *config.Listener {
		var chains []*config.FilterChain
		for i, f := range filters {
			chains = append(chains, &config.FilterChain{
				Match:          config.FilterChainMatch{ServerNames: []string{fmt.Sprintf("c%d.example", i)}},
				NetworkFilters: []*config.NetworkFilter{{Name: f}},
				TCPProxy:       &config.TCPProxy{StatPrefix: "tcp", Cluster: "up"},
			})
		}
		return &config.Listener{Name: "tcp", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20, FilterChains: chains}
	}
	model := func(ls ...*config.Listener) *config.Bootstrap {
		return &config.Bootstrap{Listeners: ls, Clusters: []*config.Cluster{staticCluster("up", up)}}
	}

	l := &closingLoader{}
	if _, err := New(context.Background(), model(tcpListener("ok", "broken")), Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Loader: l}); err == nil {
		t.Fatal("a listener with a broken filter started")
	}
	if l.loaded.Load() != 1 || l.closed.Load() != 1 {
		t.Fatalf("after the failed build: %d loaded, %d closed; want 1 and 1", l.loaded.Load(), l.closed.Load())
	}

	l = &closingLoader{}
	srv := reloadServer(t, model(tcpListener("ok", "ok")), l)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if _, err := srv.Reload(context.Background(), model(tcpListener("ok", "broken"))); err == nil {
		t.Fatal("a reload with a broken filter applied")
	}
	if l.loaded.Load() != 3 || l.closed.Load() != 1 {
		t.Fatalf("after the failed reload: %d loaded, %d closed; want 3 and 1 (the half-built listener's)", l.loaded.Load(), l.closed.Load())
	}
	res, err := srv.Reload(context.Background(), model())
	if err != nil {
		t.Fatal(err)
	}
	waitReleased(t, res.Released, "the removed listener")
	if l.closed.Load() != 3 {
		t.Fatalf("after the listener was removed: %d of 3 closed", l.closed.Load())
	}
}
