package proxy

import (
	"slices"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// TestPoolConnectionDeadline: the route timeout of a pooled exchange is
// a deadline on its upstream connection (decisions §50). A connection
// whose last exchange's deadline passed while it sat idle is still
// reused; an exchange that hits its deadline on a reused connection is
// answered 504 "upstream request timeout" and costs that connection
// only, the next request going out on a new one.
func TestPoolConnectionDeadline(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		if req.Target == "/hang" {
			return "", false // never answered; the proxy gives up
		}
		return okResponse("ok"), false
	})
	ok := prefixRoute("/ok", "web")
	ok.Timeout = config.Duration(5 * time.Second) // ample for a loaded machine
	hang := prefixRoute("/hang", "web")
	hang.Timeout = config.Duration(300 * time.Millisecond)
	f := start(t, []*config.Route{ok, hang}, nil, nil, staticCluster("web", up.addr))
	get := func(path string) (int, string) {
		t.Helper()
		resp, body := do(t, mustReq("GET", "http://"+f.addr+path, nil))
		return resp.StatusCode, body
	}

	begun := time.Now()
	if code, body := get("/ok"); code != 200 || body != "ok" {
		t.Fatalf("first request: %d %q", code, body)
	}
	// The first exchange's deadline passes, and the pool's idle sweep
	// (every 500 ms) looks at the connection, before the second request.
	time.Sleep(time.Until(begun.Add(5*time.Second + 2*idleSweepEvery)))
	if code, body := get("/ok"); code != 200 || body != "ok" {
		t.Fatalf("request after the idle deadline: %d %q", code, body)
	}
	if got := up.requests(); !slices.Equal(got, []int{0, 0}) {
		t.Fatalf("upstream connections per request %v, want [0 0] (the idle connection reused)", got)
	}

	if code, body := get("/hang"); code != 504 || body != "upstream request timeout" {
		t.Fatalf("hanging request: %d %q, want 504 upstream request timeout", code, body)
	}
	if got := f.st.Counter("cluster.web.upstream_rq_timeout").Value(); got != 1 {
		t.Errorf("upstream_rq_timeout = %d, want 1", got)
	}
	if code, body := get("/ok"); code != 200 || body != "ok" {
		t.Fatalf("request after the timeout: %d %q", code, body)
	}
	if got := up.requests(); !slices.Equal(got, []int{0, 0, 0, 1}) {
		t.Errorf("upstream connections per request %v, want [0 0 0 1] (the timed-out connection closed)", got)
	}
}
