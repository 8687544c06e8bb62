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
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// scriptedUpstream is an HTTP/1.1 endpoint on a raw listener: each
// connection is one attempt, n counting from 1, whose request net/http
// parses (chunked body, trailers) and whose answer serve writes by hand,
// so that a test can fail an attempt in the middle of its body. The
// connection is closed when serve returns.
func scriptedUpstream(t *testing.T, serve func(n int, req *http.Request, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(n int, c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				serve(n, req, c)
			}(n, c)
		}
	}()
	return ln.Addr().String()
}

// chunkedClient is a client that streams a chunked POST to the proxy by
// hand: the head and a first chunk at once, the rest when the test says.
type chunkedClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialChunked(t *testing.T, addr, path, first string) *chunkedClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n%x\r\n%s\r\n", path, len(first), first)
	return &chunkedClient{c: c, br: bufio.NewReader(c)}
}

// finish sends the rest of the body and the trailer x-checksum.
func (cc *chunkedClient) finish(rest, checksum string) {
	fmt.Fprintf(cc.c, "%x\r\n%s\r\n0\r\nX-Checksum: %s\r\n\r\n", len(rest), rest, checksum)
}

func (cc *chunkedClient) response(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(cc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// await receives from ch within a generous time.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// failFirstAttempt is the scripted upstream of the streamed-retry
// tests: the first attempt reads the body's first len(first) bytes
// (reported on firstGot) and then fails, by a 503 or a reset
// (fail); the second reports its start on second, then reads its whole
// request (reported on got) and answers 200 with what it got.
type streamedAttempts struct {
	firstGot chan string
	second   chan struct{}
	got      chan attemptSeen
}

type attemptSeen struct{ body, checksum, attempt string }

func newStreamedAttempts() *streamedAttempts {
	return &streamedAttempts{firstGot: make(chan string, 1), second: make(chan struct{}), got: make(chan attemptSeen, 1)}
}

func (a *streamedAttempts) serve(t *testing.T, first int, fail string) func(n int, req *http.Request, c net.Conn) {
	return func(n int, req *http.Request, c net.Conn) {
		switch n {
		case 1:
			buf := make([]byte, first)
			if _, err := io.ReadFull(req.Body, buf); err != nil {
				a.firstGot <- "error: " + err.Error()
				return
			}
			a.firstGot <- string(buf)
			if fail == "reset" {
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			}
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		case 2:
			close(a.second)
			b, err := io.ReadAll(req.Body)
			if err != nil {
				t.Errorf("second attempt's body: %v", err)
			}
			a.got <- attemptSeen{string(b), req.Trailer.Get("X-Checksum"), req.Header.Get("X-Envoy-Attempt-Count")}
			answer := "attempt 2 got " + string(b)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		default:
			t.Errorf("unexpected attempt %d", n)
		}
	}
}

// TestRetryStreamedBody: a request whose body the client is still
// sending when the first attempt fails (a 503, or a reset) is retried,
// as Envoy's router retries it: the retry replays what the router kept
// of the body, then gets the rest as the client sends it, trailers
// included, so the second attempt sees the whole request.
func TestRetryStreamedBody(t *testing.T) {
	for _, fail := range []string{"503", "reset"} {
		t.Run(fail, func(t *testing.T) {
			a := newStreamedAttempts()
			up := scriptedUpstream(t, a.serve(t, len("part1-"), fail))
			f := startYAML(t, retryConfig(`retry_on: "5xx,reset", num_retries: 2, retry_back_off: {base_interval: 0.001s}`, up), "")
			cc := dialChunked(t, f.addr, "/", "part1-")
			if got := await(t, "the first attempt's first chunk", a.firstGot); got != "part1-" {
				t.Fatalf("first attempt read %q", got)
			}
			// The rest of the body leaves the client only once the retry
			// is under way: the router streams it to the second attempt.
			await(t, "the second attempt", (<-chan struct{})(a.second))
			cc.finish("part2", "abc")
			status, body := cc.response(t)
			if status != 200 || body != "attempt 2 got part1-part2" {
				t.Fatalf("got %d %q", status, body)
			}
			seen := await(t, "the second attempt's request", a.got)
			if seen != (attemptSeen{"part1-part2", "abc", "2"}) {
				t.Errorf("second attempt saw body %q, trailer x-checksum %q, x-envoy-attempt-count %q; want the whole request and attempt 2", seen.body, seen.checksum, seen.attempt)
			}
			for name, want := range map[string]uint64{"upstream_rq_retry": 1, "upstream_rq_retry_success": 1, "retry_or_shadow_abandoned": 0} {
				if got := f.st.Counter("cluster.up." + name).Value(); got != want {
					t.Errorf("cluster.up.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestRetryStreamedBodyOverflow: a streamed body that outgrows the retry
// buffer (per_request_buffer_limit_bytes, the route's, else its virtual
// host's) abandons retries, counted in retry_or_shadow_abandoned, as
// Envoy's router: while the attempt is in flight it goes on streaming
// and its failure is the answer; during a retry's back-off (no attempt
// in flight) the request gets 507.
func TestRetryStreamedBodyOverflow(t *testing.T) {
	t.Run("in flight", func(t *testing.T) {
		firstGot := make(chan string, 1)
		whole := make(chan string, 1)
		up := scriptedUpstream(t, func(n int, req *http.Request, c net.Conn) {
			if n != 1 {
				t.Errorf("unexpected attempt %d", n)
				return
			}
			buf := make([]byte, len("part1-"))
			_, _ = io.ReadFull(req.Body, buf)
			firstGot <- string(buf)
			rest, _ := io.ReadAll(req.Body)
			whole <- string(buf) + string(rest)
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nnope")
		})
		cfg := retryConfig(`retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 0.001s}`, up)
		cfg = strings.Replace(cfg, "              - match: {prefix: /}\n", "              - match: {prefix: /}\n                per_request_buffer_limit_bytes: 8\n", 1)
		f := startYAML(t, cfg, "")
		cc := dialChunked(t, f.addr, "/", "part1-")
		if got := await(t, "the first chunk upstream", firstGot); got != "part1-" {
			t.Fatalf("first attempt read %q", got)
		}
		cc.finish("part2", "abc") // 11 bytes: past the route's 8
		status, body := cc.response(t)
		if status != 503 || body != "nope" {
			t.Errorf("got %d %q, want the attempt's 503: no retry", status, body)
		}
		if got := await(t, "the whole body upstream", whole); got != "part1-part2" {
			t.Errorf("the attempt got %q, want the whole body streamed on", got)
		}
		for name, want := range map[string]uint64{"upstream_rq_retry": 0, "retry_or_shadow_abandoned": 1} {
			if got := f.st.Counter("cluster.up." + name).Value(); got != want {
				t.Errorf("cluster.up.%s = %d, want %d", name, got, want)
			}
		}
	})
	t.Run("during back-off", func(t *testing.T) {
		firstGot := make(chan string, 1)
		up := scriptedUpstream(t, func(n int, req *http.Request, c net.Conn) {
			if n != 1 {
				t.Errorf("unexpected attempt %d", n)
				return
			}
			buf := make([]byte, len("part1-"))
			_, _ = io.ReadFull(req.Body, buf)
			firstGot <- string(buf)
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		})
		// A back-off far longer than the test: the rest of the body
		// arrives while no attempt is in flight.
		cfg := retryConfig(`retry_on: 5xx, num_retries: 2, retry_back_off: {base_interval: 1000s, max_interval: 1000s}`, up)
		cfg = strings.Replace(cfg, "              include_request_attempt_count: true\n", "              include_request_attempt_count: true\n              per_request_buffer_limit_bytes: 8\n", 1)
		f := startYAML(t, cfg, "")
		cc := dialChunked(t, f.addr, "/", "part1-")
		if got := await(t, "the first chunk upstream", firstGot); got != "part1-" {
			t.Fatalf("first attempt read %q", got)
		}
		waitFor(t, "the retry to be scheduled", func() bool { return f.st.Counter("cluster.up.upstream_rq_retry").Value() == 1 })
		cc.finish("part2", "abc")
		status, body := cc.response(t)
		if status != http.StatusInsufficientStorage || body != "exceeded request buffer limit while retrying upstream" {
			t.Errorf("got %d %q, want Envoy's 507", status, body)
		}
		if got := f.st.Counter("cluster.up.retry_or_shadow_abandoned").Value(); got != 1 {
			t.Errorf("cluster.up.retry_or_shadow_abandoned = %d, want 1", got)
		}
	})
}

// TestUpstreamFiltersStreamedRequest: a cluster's upstream filters see
// a streamed request as it arrives, as Envoy's upstream filter chain
// does: the first attempt's endpoint gets the first chunk, as the
// filter changed it, before the client sent the rest (the router no
// longer holds the whole request first). The filter changes its data in
// place, and the retry's fresh chain replays the router's copy of the
// request, unchanged by the first chain, then the rest as it comes.
func TestUpstreamFiltersStreamedRequest(t *testing.T) {
	a := newStreamedAttempts()
	up := scriptedUpstream(t, a.serve(t, len("PART1-"), "503"))
	upHooks := &hooks{
		decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			h.Del("content-length")
			return filter.HeadersContinue
		},
		decodeData: func(cb filter.Callbacks, b *filter.Buffer, end bool) filter.DataStatus {
			copy(b.Bytes, bytes.ToUpper(b.Bytes)) // in place
			return filter.DataContinue
		},
	}
	cl := staticCluster("web", up)
	cl.UpstreamHTTPFilters = []*config.HTTPFilter{{Name: "upper"}}
	route := prefixRoute("/", "web")
	route.RetryPolicy = &config.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 2, BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(10 * time.Millisecond)}
	f := start(t, []*config.Route{route}, nil, loader{"upper": upHooks}, cl)

	cc := dialChunked(t, f.addr, "/", "part1-")
	if got := await(t, "the first attempt's first chunk", a.firstGot); got != "PART1-" {
		t.Fatalf("first attempt read %q, want the filtered first chunk", got)
	}
	await(t, "the second attempt", (<-chan struct{})(a.second))
	cc.finish("part2", "abc")
	status, body := cc.response(t)
	if status != 200 || body != "attempt 2 got PART1-PART2" {
		t.Fatalf("got %d %q", status, body)
	}
	if seen := await(t, "the second attempt's request", a.got); seen.body != "PART1-PART2" || seen.checksum != "abc" {
		t.Errorf("second attempt saw body %q, trailer %q", seen.body, seen.checksum)
	}
	waitFor(t, "both attempts' filters to end", func() bool {
		n := 0
		for _, e := range upHooks.events() {
			if e == "destroy" {
				n++
			}
		}
		return n == 2
	})
	if got := strings.Count(strings.Join(upHooks.events(), " "), "decodeHeaders"); got != 2 {
		t.Errorf("upstream filter decodeHeaders %d times, want once per attempt: %q", got, upHooks.events())
	}
}

// TestRetryStreamedPerTryTimeout: per_try_timeout bounds an attempt of
// a streamed request from the request's end, as Envoy's router arms it
// (onRequestComplete): a first attempt that got the whole body and
// never answers is cut and retried, and the retry gets the whole body
// again; with no retry left, the answer is 504 upstream_per_try_timeout.
func TestRetryStreamedPerTryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		retries int
		status  int
		body    string
	}{
		{"retried", 1, 200, "attempt 2 got part1-part2"},
		{"no retry left", 0, 504, "upstream request timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			firstGot := make(chan string, 1)
			secondGot := make(chan string, 1)
			up := scriptedUpstream(t, func(n int, req *http.Request, c net.Conn) {
				b, _ := io.ReadAll(req.Body)
				if n == 1 {
					firstGot <- string(b)
					// Never answers: waits for the proxy to give up on
					// the attempt (its connection closes).
					_, _ = io.Copy(io.Discard, c)
					return
				}
				secondGot <- string(b)
				answer := "attempt 2 got " + string(b)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
			})
			f := startYAML(t, retryConfig(fmt.Sprintf(`retry_on: 5xx, num_retries: %d, per_try_timeout: 0.3s, retry_back_off: {base_interval: 0.001s}`, tc.retries), up), "")
			cc := dialChunked(t, f.addr, "/", "part1-")
			cc.finish("part2", "abc")
			if got := await(t, "the first attempt's body", firstGot); got != "part1-part2" {
				t.Fatalf("first attempt got %q", got)
			}
			status, body := cc.response(t)
			if status != tc.status || body != tc.body {
				t.Errorf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
			if tc.retries > 0 {
				if got := await(t, "the second attempt's body", secondGot); got != "part1-part2" {
					t.Errorf("second attempt got %q", got)
				}
			}
			if got := f.st.Counter("cluster.up.upstream_rq_per_try_timeout").Value(); got != 1 {
				t.Errorf("upstream_rq_per_try_timeout = %d, want 1", got)
			}
		})
	}
}

// TestRetryStreamedBodyH2: TestRetryStreamedBody's 503 case from an
// HTTP/2 client (h2c), whose body and trailers the proxy gets as
// frames.
func TestRetryStreamedBodyH2(t *testing.T) {
	a := newStreamedAttempts()
	up := scriptedUpstream(t, a.serve(t, len("part1-"), "503"))
	f := startYAML(t, retryConfig(`retry_on: 5xx, retry_back_off: {base_interval: 0.001s}`, up), "")
	client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+f.addr+"/", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	if _, err := pw.Write([]byte("part1-")); err != nil {
		t.Fatal(err)
	}
	if got := await(t, "the first attempt's first chunk", a.firstGot); got != "part1-" {
		t.Fatalf("first attempt read %q", got)
	}
	await(t, "the second attempt", (<-chan struct{})(a.second))
	if _, err := pw.Write([]byte("part2")); err != nil {
		t.Fatal(err)
	}
	req.Trailer.Set("X-Checksum", "abc") // read by the transport at the body's end
	pw.Close()
	r := await(t, "the response", done)
	if r.err != nil || r.status != 200 || r.body != "attempt 2 got part1-part2" {
		t.Fatalf("got %d %q %v", r.status, r.body, r.err)
	}
	if seen := await(t, "the second attempt's request", a.got); seen != (attemptSeen{"part1-part2", "abc", "2"}) {
		t.Errorf("second attempt saw %+v, want the whole request and attempt 2", seen)
	}
}
