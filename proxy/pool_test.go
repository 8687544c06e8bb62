package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/stats"
)

// rawUpstream is an HTTP/1.1 upstream on a raw TCP socket: it parses
// each request with the codec and answers what answer returns, bytes
// as they go on the wire. It records which connection (by accept
// order) carried each request.
type rawUpstream struct {
	addr string
	// answer returns the response bytes for the n-th request (from 0)
	// arriving on connection conn; close after writing them when close.
	answer func(conn, n int, req *http1.Request, body string) (resp string, close bool)

	mu    sync.Mutex
	conns []net.Conn
	seen  []int // connection index of each request, in arrival order
	heads []string
}

func newRawUpstream(t *testing.T, answer func(conn, n int, req *http1.Request, body string) (string, bool)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String(), answer: answer}
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			id := len(u.conns)
			u.conns = append(u.conns, c)
			u.mu.Unlock()
			go u.serve(c, id)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn, id int) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		var req http1.Request
		if err := http1.ReadRequest(br, http1.Limits{}, &req); err != nil {
			return
		}
		body, err := io.ReadAll(http1.NewBodyReader(br, &req, http1.Limits{}))
		if err != nil {
			return
		}
		u.mu.Lock()
		u.seen = append(u.seen, id)
		u.heads = append(u.heads, req.Method+" "+req.Target)
		u.mu.Unlock()
		resp, closeAfter := u.answer(id, n, &req, string(body))
		if resp != "" {
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
		if closeAfter {
			return
		}
	}
}

func (u *rawUpstream) requests() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.seen...)
}

func (u *rawUpstream) connCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

func okResponse(body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
}

// TestPoolReusesLastReturned: the pool is LIFO per endpoint. Two
// concurrent requests open two connections; the one whose response
// ends last is the one the next request reuses, and no third
// connection is opened.
func TestPoolReusesLastReturned(t *testing.T) {
	arrived := make(chan int, 2)
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		if n == 0 && conn < 2 {
			arrived <- conn
			<-release[conn]
		}
		return okResponse("conn" + itoa(conn)), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	done := make(chan string, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, err := http.Get("http://" + f.addr + "/")
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(b)
		}()
	}
	<-arrived
	<-arrived
	// Connection 0 answers first, connection 1 last: 1 is on top.
	close(release[0])
	if got := <-done; got != "conn0" {
		t.Fatalf("first response %q", got)
	}
	close(release[1])
	if got := <-done; got != "conn1" {
		t.Fatalf("second response %q", got)
	}
	_, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if body != "conn1" {
		t.Errorf("third request went on %q, want conn1 (the last returned)", body)
	}
	if got := f.st.Counter("cluster.web.upstream_cx_total").Value(); got != 2 {
		t.Errorf("upstream_cx_total = %d, want 2", got)
	}
	if got := up.connCount(); got != 2 {
		t.Errorf("upstream saw %d connections, want 2", got)
	}
}

// TestPoolStaleConnectionRetriedOnce: a kept-alive connection the
// upstream closes is not used for the next request (found closed at
// checkout), and one that is closed while the request is on its way,
// before any byte of a response, has the request sent again once on a
// new connection: the client never sees the failure.
func TestPoolStaleConnectionRetriedOnce(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		switch {
		case conn == 0:
			// Answer, keep-alive, then close the idle connection.
			return okResponse("a"), true
		case conn == 1 && n == 1:
			// Close on the second request without a response, as an
			// upstream whose idle timeout raced the request does.
			return "", true
		}
		return okResponse("b"), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	if _, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil)); body != "a" {
		t.Fatalf("first body %q", body)
	}
	// The upstream closed connection 0 after answering; the next request
	// goes on a new connection, successfully.
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 200 || body != "b" {
		t.Fatalf("after the upstream closed the idle connection: %d %q", resp.StatusCode, body)
	}
	// Connection 1 closes on the next request: retried on connection 2.
	resp, body = do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 200 || body != "b" {
		t.Fatalf("request on a connection closed under it: %d %q, want a retry's 200", resp.StatusCode, body)
	}
	if got := f.st.Counter("cluster.web.upstream_cx_total").Value(); got != 3 {
		t.Errorf("upstream_cx_total = %d, want 3", got)
	}
	if got := up.requests(); len(got) != 4 || got[2] != 1 || got[3] != 2 {
		t.Errorf("requests by connection = %v, want [0 1 1 2]", got)
	}
	if got := f.st.Counter("cluster.web.upstream_cx_destroy_remote").Value(); got < 2 {
		t.Errorf("upstream_cx_destroy_remote = %d, want at least 2", got)
	}
}

// TestPoolStaleConnectionNotRetriedForPOST: a non-idempotent request
// the upstream may have received is not sent twice.
func TestPoolStaleConnectionNotRetriedForPOST(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		if n == 1 {
			return "", true
		}
		return okResponse("ok"), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	resp, body := do(t, mustReq("POST", "http://"+f.addr+"/", strings.NewReader("x")))
	if resp.StatusCode != 503 || !strings.Contains(body, "connection failure") {
		t.Fatalf("POST on a connection closed under it: %d %q, want 503 connection failure", resp.StatusCode, body)
	}
	if got := len(up.requests()); got != 2 {
		t.Errorf("upstream saw %d requests, want 2 (no replay)", got)
	}
}

// TestPoolCircuitBreakerOverflow: with circuit_breakers max_connections
// and max_pending_requests at 1, a third concurrent request overflows:
// 503 "overflow" and upstream_rq_pending_overflow; the second waits as
// a pending request (upstream_cx_overflow) and is served on the first
// one's connection.
func TestPoolCircuitBreakerOverflow(t *testing.T) {
	arrived := make(chan struct{}, 4)
	gate := make(chan struct{})
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		arrived <- struct{}{}
		if n == 0 {
			<-gate
		}
		return okResponse("ok"), false
	})
	cl := staticCluster("web", up.addr)
	cl.CircuitBreakers = &config.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1024}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, cl)
	codes := make(chan int, 2)
	get := func() {
		resp, err := http.Get("http://" + f.addr + "/")
		if err != nil {
			codes <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go get()
	<-arrived // the first request holds the only connection
	go get()
	pending := f.st.Gauge("cluster.web.upstream_rq_pending_active")
	for deadline := time.Now().Add(10 * time.Second); pending.Value() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("upstream_rq_pending_active = %d, want 1", pending.Value())
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 503 || !strings.Contains(body, "reset reason: overflow") {
		t.Errorf("third request: %d %q, want 503 overflow", resp.StatusCode, body)
	}
	close(gate)
	for i := 0; i < 2; i++ {
		if c := <-codes; c != 200 {
			t.Errorf("held request %d: status %d", i, c)
		}
	}
	if got := f.st.Counter("cluster.web.upstream_rq_pending_overflow").Value(); got != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", got)
	}
	if got := f.st.Counter("cluster.web.upstream_cx_overflow").Value(); got != 1 {
		t.Errorf("upstream_cx_overflow = %d, want 1", got)
	}
	if got := f.st.Counter("cluster.web.upstream_cx_total").Value(); got != 1 {
		t.Errorf("upstream_cx_total = %d, want 1", got)
	}
	if got := f.st.Gauge("cluster.web.upstream_rq_active").Value(); got != 0 {
		t.Errorf("upstream_rq_active = %d after all ended, want 0", got)
	}
}

// TestPoolResponseFraming: interim responses are skipped, a chunked
// body's trailers reach the client, HEAD and 304 have no body whatever
// their Content-Length says, and the connection stays usable after
// each (one connection for all of them).
func TestPoolResponseFraming(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		switch req.Target {
		case "/interim":
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okResponse("final"), false
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n", false
		case "/head":
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false
		case "/304":
			return "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false
		}
		return okResponse("?"), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	if resp, body := do(t, mustReq("GET", "http://"+f.addr+"/interim", nil)); resp.StatusCode != 200 || body != "final" {
		t.Errorf("/interim: %d %q", resp.StatusCode, body)
	}
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/chunked", nil))
	if body != "abcde" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("/chunked: %q trailers %v", body, resp.Trailer)
	}
	if resp, body := do(t, mustReq("HEAD", "http://"+f.addr+"/head", nil)); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, mustReq("GET", "http://"+f.addr+"/304", nil)); resp.StatusCode != 304 {
		t.Errorf("/304: %d", resp.StatusCode)
	}
	if resp, body := do(t, mustReq("GET", "http://"+f.addr+"/interim", nil)); resp.StatusCode != 200 || body != "final" {
		t.Errorf("/interim again: %d %q", resp.StatusCode, body)
	}
	if got := up.connCount(); got != 1 {
		t.Errorf("upstream saw %d connections, want 1", got)
	}
}

// TestPoolMalformedResponse: a response the codec refuses is a protocol
// error before the response started, with Envoy's reset reason.
func TestPoolMalformedResponse(t *testing.T) {
	cases := map[string]string{
		"bare LF":        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"two lengths":    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"length+chunked": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"gzip coding":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"status":         "HTTP/1.1 20 OK\r\n\r\n",
		"obs-fold":       "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			up := newRawUpstream(t, func(int, int, *http1.Request, string) (string, bool) { return raw, true })
			f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
			resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
			if resp.StatusCode != 503 || !strings.Contains(body, "reset reason: protocol error") {
				t.Errorf("%d %q, want 503 protocol error", resp.StatusCode, body)
			}
			if got := f.st.Counter("cluster.web.upstream_cx_protocol_error").Value(); got != 1 {
				t.Errorf("upstream_cx_protocol_error = %d, want 1", got)
			}
		})
	}
}

// TestPoolMaxRequestsOverflow: max_requests bounds requests in flight
// whatever the connections: past it, 503 overflow at once, counted in
// upstream_rq_pending_overflow as Envoy counts it.
func TestPoolMaxRequestsOverflow(t *testing.T) {
	arrived := make(chan struct{}, 2)
	gate := make(chan struct{})
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		arrived <- struct{}{}
		<-gate
		return okResponse("ok"), false
	})
	cl := staticCluster("web", up.addr)
	cl.CircuitBreakers = &config.CircuitBreakers{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, cl)
	codes := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + f.addr + "/")
		if err != nil {
			codes <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}()
	<-arrived
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
	if resp.StatusCode != 503 || !strings.Contains(body, "reset reason: overflow") {
		t.Errorf("second request: %d %q, want 503 overflow", resp.StatusCode, body)
	}
	close(gate)
	if c := <-codes; c != 200 {
		t.Errorf("held request: status %d", c)
	}
	if got := f.st.Counter("cluster.web.upstream_rq_pending_overflow").Value(); got != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", got)
	}
}

// writeCountingConn is a real TCP connection that counts the Write
// calls made on it.
type writeCountingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *writeCountingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// writeCountingPool is a pool (stats st, prefix "cluster.t.") whose
// connections count their writes; dialed returns those it opened, in
// order.
func writeCountingPool(t *testing.T, st *stats.Store) (pool *h1Pool, dialed func() []*writeCountingConn) {
	var mu sync.Mutex
	var conns []*writeCountingConn
	pool = newH1Pool(func(ctx context.Context, a string) (net.Conn, net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		if err != nil {
			return nil, nil, err
		}
		wc := &writeCountingConn{Conn: c}
		mu.Lock()
		conns = append(conns, wc)
		mu.Unlock()
		return wc, c, nil
	}, newPoolStats(st, "cluster.t."))
	t.Cleanup(pool.close)
	return pool, func() []*writeCountingConn {
		mu.Lock()
		defer mu.Unlock()
		return append([]*writeCountingConn(nil), conns...)
	}
}

// TestPoolSmallBodyOneWrite: a request whose body is known in full and
// small leaves with its head in a single write (one syscall, one TCP
// segment), and the upstream gets head and body intact.
func TestPoolSmallBodyOneWrite(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		return okResponse("got " + body), false
	})
	pool, dialed := writeCountingPool(t, stats.New())
	const body = `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`
	for i := 0; i < 3; i++ {
		req := (&http.Request{
			Method: "POST", URL: &url.URL{Scheme: "http", Host: up.addr, Opaque: "/post"},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}}, Host: "example.com",
			ContentLength: int64(len(body)), Body: &sliceReader{b: []byte(body)},
		}).WithContext(context.Background())
		resp, err := pool.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != "got "+body {
			t.Fatalf("request %d: body %q, %v", i, got, err)
		}
	}
	conns := dialed()
	if len(conns) != 1 {
		t.Fatalf("%d upstream connections, want 1", len(conns))
	}
	conns[0].mu.Lock()
	defer conns[0].mu.Unlock()
	if conns[0].writes != 3 {
		t.Errorf("3 requests took %d writes, want one each", conns[0].writes)
	}
}

// TestClusterCountResponseNoAlloc: counting an upstream response by its
// code (upstream_rq_<code>) builds no counter name once the code was
// met, and counts into the same counter the store names.
func TestClusterCountResponseNoAlloc(t *testing.T) {
	st := stats.New()
	cl, err := newCluster(context.Background(), staticCluster("web", "127.0.0.1:1"), st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.countResponse(200)
	cl.countResponse(503)
	if n := testing.AllocsPerRun(100, func() { cl.countResponse(200); cl.countResponse(503) }); n != 0 {
		t.Errorf("countResponse allocates %v times per call pair", n)
	}
	if got := st.Counter("cluster.web.upstream_rq_200").Value(); got != 102 {
		t.Errorf("upstream_rq_200 = %d, want 102", got)
	}
	if got := st.Counter("cluster.web.upstream_rq_5xx").Value(); got != 102 {
		t.Errorf("upstream_rq_5xx = %d, want 102", got)
	}
}

// TestPoolIdleCloseSeenWithoutPeek: the upstream closes a kept-alive
// connection while it is idle. The pool learns it from the hang-up
// watch (hupwatch_linux.go), not from a peek at checkout, and the next
// request, a POST the stale retry would not send again, goes out on a
// new connection: nothing is written on the closed one and the request
// does not fail.
func TestPoolIdleCloseSeenWithoutPeek(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		return okResponse("got " + body), conn == 0 // answer, keep-alive, then close
	})
	st := stats.New()
	pool, dialed := writeCountingPool(t, st)
	post := func(body string) {
		t.Helper()
		req := (&http.Request{
			Method: "POST", URL: &url.URL{Scheme: "http", Host: up.addr, Opaque: "/post"},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Host: "example.com",
			ContentLength: int64(len(body)), Body: &sliceReader{b: []byte(body)},
		}).WithContext(context.Background())
		resp, err := pool.RoundTrip(req)
		if err != nil {
			t.Fatalf("POST %q: %v", body, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != "got "+body {
			t.Fatalf("POST %q: body %q, %v", body, got, err)
		}
	}
	post("one")
	pool.mu.Lock()
	idle := append([]*h1Conn(nil), pool.idle[up.addr]...)
	pool.mu.Unlock()
	if len(idle) != 1 {
		t.Fatalf("%d idle connections after the first exchange, want 1", len(idle))
	}
	if c := idle[0]; c.watched {
		// The watch marks the connection once the upstream's FIN is in.
		for end := time.Now().Add(10 * time.Second); !c.hup.Load(); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("the upstream's close of the idle connection was not seen in 10 s")
			}
		}
	} else if runtime.GOOS == "linux" {
		t.Fatal("a plain TCP connection is not watched on Linux")
	}
	post("two")
	conns := dialed()
	if len(conns) != 2 {
		t.Fatalf("%d upstream connections, want 2", len(conns))
	}
	conns[0].mu.Lock()
	defer conns[0].mu.Unlock()
	if conns[0].writes != 1 {
		t.Errorf("the closed connection took %d writes, want 1 (the second request not written on it)", conns[0].writes)
	}
	if got := st.Counter("cluster.t.upstream_cx_destroy_remote").Value(); got != 1 {
		t.Errorf("upstream_cx_destroy_remote = %d, want 1", got)
	}
	if got := up.requests(); len(got) != 2 || got[1] != 1 {
		t.Errorf("requests by connection %v, want [0 1]", got)
	}
}

// TestPoolUnaskedBytesOnIdleConnection: an upstream sends a response
// nobody asked for on a kept-alive connection and keeps it open (no
// hang-up to see). Once the connection has sat idle for idlePeekAfter,
// its checkout peeks, finds the bytes and takes a new connection: the
// next request gets its own response, not the unasked one.
func TestPoolUnaskedBytesOnIdleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sendExtra, sent := make(chan struct{}), make(chan struct{})
	go func() {
		for id := 0; ; id++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func(id int) {
				br := bufio.NewReader(c)
				for {
					var req http1.Request
					if err := http1.ReadRequest(br, http1.Limits{}, &req); err != nil {
						return
					}
					if _, err := io.ReadAll(http1.NewBodyReader(br, &req, http1.Limits{})); err != nil {
						return
					}
					if _, err := io.WriteString(c, okResponse("conn"+itoa(id))); err != nil {
						return
					}
					if id == 0 {
						<-sendExtra
						io.WriteString(c, okResponse("unasked"))
						close(sent)
					}
				}
			}(id)
		}
	}()
	st := stats.New()
	pool := newH1Pool(func(ctx context.Context, a string) (net.Conn, net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		return c, c, err
	}, newPoolStats(st, "cluster.t."))
	t.Cleanup(pool.close)
	get := func() string {
		t.Helper()
		req := (&http.Request{
			Method: "GET", URL: &url.URL{Scheme: "http", Host: ln.Addr().String(), Opaque: "/"},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Host: "example.com",
		}).WithContext(context.Background())
		resp, err := pool.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := get(); got != "conn0" {
		t.Fatalf("first response %q", got)
	}
	close(sendExtra)
	<-sent // on loopback, in the proxy's socket once written
	// The connection has sat idle for idlePeekAfter (set back, not slept).
	pool.mu.Lock()
	for _, c := range pool.idle[ln.Addr().String()] {
		c.idleSince = c.idleSince.Add(-idlePeekAfter)
	}
	pool.mu.Unlock()
	if got := get(); got != "conn1" {
		t.Fatalf("second response %q, want conn1's (not the unasked bytes of conn0)", got)
	}
	if got := st.Counter("cluster.t.upstream_cx_destroy_remote").Value(); got != 1 {
		t.Errorf("upstream_cx_destroy_remote = %d, want 1", got)
	}
}
