package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestDurationsFromMonotonicReadings: the stream's readings taken from
// the monotonic clock alone (clock.go) still give what a user sees:
// %DURATION% covers the whole exchange, x-envoy-upstream-service-time
// the wait for the upstream's head, and a response whose chunks keep
// coming outlives a stream_idle_timeout shorter than the whole response.
// With the router alone and behind a filter.
//
// The upstream holds its head or its body for hold: the durations are
// checked against that lower bound only, which holds however slow the
// machine is.
func TestDurationsFromMonotonicReadings(t *testing.T) {
	const hold = 200 * time.Millisecond
	const gap, chunks = 250 * time.Millisecond, 6
	const idle = time.Second // < (chunks-1)*gap: only activity keeps the stream
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/slowhead":
			time.Sleep(hold)
			fmt.Fprint(w, "late head")
		case "/slowbody":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(hold)
			fmt.Fprint(w, "late body")
		case "/trickle":
			for i := range chunks {
				if i > 0 {
					time.Sleep(gap)
				}
				fmt.Fprint(w, i)
				w.(http.Flusher).Flush()
			}
		}
	})
	for _, tc := range []struct {
		name    string
		filters []string
	}{{"router only", nil}, {"behind a filter", []string{"pass"}}} {
		t.Run(tc.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "access.log")
			f := startWith(t, []*config.Route{prefixRoute("/", "web")}, tc.filters, loader{"pass": &hooks{}}, func(l *config.Listener) {
				h := l.FilterChains[0].HTTP
				h.StreamIdleTimeout = config.Duration(idle)
				h.AccessLogs = []*config.AccessLog{{Name: "envoy.access_loggers.file", Path: logPath,
					Format: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%\n"}}
			}, staticCluster("web", up))
			requests := []struct{ raw, body string }{
				// A body read on the stream's goroutine: the upstream
				// request starts in its event.
				{"POST /slowhead HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "late head"},
				{"GET /slowhead HTTP/1.1\r\nHost: x\r\n\r\n", "late head"},
				{"GET /slowbody HTTP/1.1\r\nHost: x\r\n\r\n", "late body"},
				{"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n", "012345"},
			}
			for i, rq := range requests {
				code, body, _ := rawRequest(t, f.addr, rq.raw)
				if code != 200 || body != rq.body {
					t.Fatalf("%q: %d %q, want 200 %q", strings.SplitN(rq.raw, "\r", 2)[0], code, body, rq.body)
				}
				f.waitCounter(t, "http.ingress_http.downstream_rq_completed", uint64(i+1))
			}
			f.srv.FlushAccessLogs()
			lines := readLines(t, logPath)
			if len(lines) != len(requests) {
				t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), len(requests), strings.Join(lines, ""))
			}
			type entry struct{ duration, service int64 }
			got := map[string]entry{}
			for _, l := range lines {
				fs := strings.Fields(l)
				if len(fs) != 5 || fs[2] != "200" {
					t.Fatalf("access log line %q: want METHOD PATH 200 DURATION SERVICE-TIME", l)
				}
				d, err1 := strconv.ParseInt(fs[3], 10, 64)
				s, err2 := strconv.ParseInt(fs[4], 10, 64)
				if err1 != nil || err2 != nil {
					t.Fatalf("access log line %q: DURATION or service time not a number", l)
				}
				got[fs[0]+" "+fs[1]] = entry{d, s}
			}
			ms := func(d time.Duration) int64 { return d.Milliseconds() }
			for _, k := range []string{"POST /slowhead", "GET /slowhead"} {
				if e := got[k]; e.service < ms(hold) || e.duration < e.service {
					t.Errorf("%s: service time %d ms, duration %d ms; want service time >= %d and duration >= service time", k, e.service, e.duration, ms(hold))
				}
			}
			if e := got["GET /slowbody"]; e.duration < ms(hold) || e.duration < e.service {
				t.Errorf("GET /slowbody: duration %d ms, service time %d ms; want duration >= %d and >= service time", e.duration, e.service, ms(hold))
			}
			if e := got["GET /trickle"]; e.duration < ms((chunks-1)*gap) {
				t.Errorf("GET /trickle: duration %d ms, want >= %d", e.duration, ms((chunks-1)*gap))
			}
			if n := f.counter("http.ingress_http.downstream_rq_idle_timeout"); n != 0 {
				t.Errorf("downstream_rq_idle_timeout = %d: a response with activity every %v expired at stream_idle_timeout %v", n, gap, idle)
			}
		})
	}
}

// TestPoolIdleExpiryFromMonotonicReadings: the pool's checkout ages the
// idle connections, and their return sets their idle start, from the
// monotonic clock alone (clock.go). A connection back in the pool is reused;
// one idle for longer than the cluster's idle_timeout (its idle start
// set back, not slept: the sweep never runs first) is closed at the
// checkout and the request gets a new one. A POST and a GET.
func TestPoolIdleExpiryFromMonotonicReadings(t *testing.T) {
	const idle = time.Hour
	for _, rq := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		name := strings.SplitN(rq, " ", 2)[0]
		t.Run(name, func(t *testing.T) {
			w := newConnWatcher()
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				fmt.Fprint(rw, "ok")
			}))
			up.Config.ConnState = w.hook
			up.Start()
			t.Cleanup(up.Close)
			cl := staticCluster("up", up.Listener.Addr().String())
			cl.UpstreamHTTP = &config.UpstreamHTTP{IdleTimeout: durationPtr(idle)}
			f := start(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, cl)
			send := func(i int) {
				t.Helper()
				if code, body, _ := rawRequest(t, f.addr, rq); code != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q", i, code, body)
				}
				f.waitCounter(t, "http.ingress_http.downstream_rq_completed", uint64(i))
			}
			send(1)
			send(2)
			if n := w.count(); n != 1 {
				t.Fatalf("%d upstream connections for two requests in a row, want 1", n)
			}
			pool := f.srv.currentClusters()["up"].pool
			pool.mu.Lock()
			n := 0
			for _, cs := range pool.idle {
				for _, c := range cs {
					c.idleSince = c.idleSince.Add(-idle)
					n++
				}
			}
			pool.mu.Unlock()
			if n != 1 {
				t.Fatalf("%d idle connections, want 1", n)
			}
			send(3)
			if n := w.count(); n != 2 {
				t.Errorf("%d upstream connections after one sat idle past idle_timeout, want 2", n)
			}
			if got := f.counter("cluster.up.upstream_cx_idle_timeout"); got != 1 {
				t.Errorf("upstream_cx_idle_timeout = %d, want 1", got)
			}
		})
	}
}
