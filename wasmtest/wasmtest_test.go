package wasmtest_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// kitchensink is wasmtest's own test plugin (testdata/kitchensink): its
// behaviour per request is chosen by the x-test header.
func kitchensink(t wasmtest.TB) string {
	t.Helper()
	return wasmtest.Build(t, "testdata/kitchensink")
}

func request(mode string, extra ...string) wasmtest.Headers {
	return wasmtest.Request("GET", "/", append([]string{"x-test", mode}, extra...)...)
}

// mustFail runs fn under wasmtest.Capture and returns its failures
// joined, failing t when there are none or when one lacks a wanted part.
func mustFail(t *testing.T, fn func(t wasmtest.TB), want ...string) string {
	t.Helper()
	failures := wasmtest.Capture(fn)
	if len(failures) == 0 {
		t.Fatalf("expected a failure, got none")
	}
	all := strings.Join(failures, "\n---\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("failure message lacks %q:\n%s", w, all)
		}
	}
	return all
}

// The seed's transcript, on the compiled json-validation example.
func TestSeedTranscript(t *testing.T) {
	wasm := wasmtest.Build(t, "../examples/json-validation")
	p := wasmtest.Load(t, wasm, wasmtest.PluginConfig(`{"requiredKeys": ["id", "token"]}`))
	cases := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int // 0: forwarded upstream
		wantBody    string
	}{
		{"no content type", "", "", 403, "content-type must be provided"},
		{"not JSON", "application/json", "not JSON", 403, "invalid payload"},
		{"missing token", "application/json", `{"id": "xxx"}`, 403, "invalid payload"},
		{"valid", "application/json", `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := p.NewHTTPStream()
			var extra []string
			if c.contentType != "" {
				extra = []string{"content-type", c.contentType}
			}
			s.SendRequestHeaders(wasmtest.Request("POST", "/", extra...), c.body == "")
			if c.body != "" {
				// Two chunks: the plugin pauses until the end of the body.
				half := len(c.body) / 2
				s.SendRequestBody([]byte(c.body[:half]), false).ExpectPause()
				s.SendRequestBody([]byte(c.body[half:]), true)
			}
			if c.wantStatus != 0 {
				s.ExpectLocalResponse(c.wantStatus, c.wantBody)
				if got := s.Client(); string(got.Body) != c.wantBody || !got.Complete {
					t.Errorf("client got body %q (complete %v), want %q", got.Body, got.Complete, c.wantBody)
				}
			} else {
				s.ExpectNoLocalResponse()
				if got := string(s.Upstream().Body); got != c.body {
					t.Errorf("upstream got body %q, want %q", got, c.body)
				}
			}
			s.Complete()
		})
	}
}

// One plugin, several route configurations (RouteConfig): a stream on a
// route is served by that route's configuration, others by the plugin's
// own; every configuration is a root context in the same instance.
func TestRouteConfig(t *testing.T) {
	wasm := wasmtest.Build(t, "../examples/json-validation")
	p := wasmtest.Load(t, wasm, wasmtest.PluginConfig(`{"requiredKeys": ["id"]}`),
		wasmtest.RouteConfig("orders", `{"requiredKeys": ["id", "token"]}`),
		wasmtest.RouteConfig("open", `{"requiredKeys": []}`))
	for _, c := range []struct {
		route, body string
		want        int // 0: forwarded upstream
	}{
		{"", `{"id": 1}`, 0},
		{"other", `{"token": 1}`, 403},
		{"orders", `{"id": 1}`, 403},
		{"orders", `{"id": 1, "token": 2}`, 0},
		{"open", `{}`, 0},
	} {
		s := p.NewHTTPStream(wasmtest.WithRoute(c.route))
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		s.SendRequestBody([]byte(c.body), true)
		if c.want != 0 {
			s.ExpectLocalResponse(c.want, "invalid payload")
		} else {
			s.ExpectNoLocalResponse()
		}
		s.Complete()
	}
	if v, ok := p.HostStat("wasm.envoy.wasm.runtime.v8.active"); !ok || v != 1 {
		t.Errorf("instances: %d (found %v), want 1 (route configurations share the instance)", v, ok)
	}
}

func TestHeaderAndBodyEdits(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t))

	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("edit-headers", "x-remove", "1"), true).ExpectContinue()
	s.ExpectUpstreamHeader("x-added", "yes")
	s.ExpectUpstreamHeader(":path", "/rewritten")
	if _, ok := s.Upstream().Headers.Get("x-remove"); ok {
		t.Errorf("x-remove reached the upstream")
	}
	s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
	s.ExpectClientHeader("x-plugin", "kitchensink")
	s.Complete()

	s = p.NewHTTPStream()
	s.SendRequestHeaders(request("body-upper"), false).ExpectContinue()
	s.SendRequestBody([]byte("hello "), false).ExpectPause()
	s.SendRequestBody([]byte("world"), true).ExpectContinue()
	if got := string(s.Upstream().Body); got != "HELLO WORLD" {
		t.Errorf("upstream body %q, want HELLO WORLD", got)
	}
	if h, ok := p.Histogram("kitchensink_body_bytes"); !ok || h.Count != 1 || h.Sum != 11 {
		t.Errorf("histogram kitchensink_body_bytes = %+v, %v; want one sample of 11", h, ok)
	}
	s.Complete()

	s = p.NewHTTPStream()
	s.SendRequestHeaders(request("response-body"), true)
	s.SendResponseHeaders(wasmtest.Response(200, "content-length", "4"), false).ExpectContinue()
	s.SendResponseBody([]byte("bo"), false).ExpectPause()
	s.SendResponseBody([]byte("dy"), true).ExpectContinue()
	if got := s.Client(); string(got.Body) != "<<body>>" || !got.Complete {
		t.Errorf("client body %q complete=%v, want <<body>>", got.Body, got.Complete)
	}
	s.SendRequestTrailers(nil)
	s.Complete()
}

func TestTrailers(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("none"), false)
	s.SendRequestBody([]byte("x"), false)
	s.SendRequestTrailers(wasmtest.Headers{{Key: "grpc-status", Value: "0"}}).ExpectContinue()
	p.ExpectLog("info", "request trailers: 1, grpc-status=0")
	if tr := s.Upstream().Trailers; tr == nil || !s.Upstream().Complete {
		t.Errorf("upstream trailers %v, complete %v", tr, s.Upstream().Complete)
	}
	s.Complete()

	// Trailers the plugin adds from its last body callback follow the body.
	s = p.NewHTTPStream()
	s.SendRequestHeaders(request("add-trailer"), false)
	s.SendRequestBody([]byte("12345"), true).ExpectContinue()
	if tr := s.Upstream().Trailers; tr == nil {
		t.Errorf("no trailers reached the upstream:\n%s", strings.Join(s.Trace(), "\n"))
	} else if v, _ := tr.Get("x-checksum"); v != "5" {
		t.Errorf("x-checksum = %q, want 5", v)
	}
	s.Complete()
}

// A local response runs back through the plugin's response callbacks,
// so the client sees the header the plugin adds to every response.
func TestLocalResponseRunsThroughResponseCallbacks(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("local"), false).ExpectPause()
	s.ExpectLocalResponse(418, "short and stout")
	s.ExpectClientHeader("x-reason", "teapot")
	s.ExpectClientHeader("x-plugin", "kitchensink")
	s.ExpectClientHeader("content-type", "text/plain")
	r := s.SendRequestBody([]byte("late"), true)
	if r.Called || !strings.Contains(r.Status, "local response 418") {
		t.Errorf("body after a local response: %+v", r)
	}
	mustFail(t, func(tb wasmtest.TB) {
		q := wasmtest.Load(tb, kitchensink(t))
		s := q.NewHTTPStream()
		s.SendRequestHeaders(request("local"), true)
		s.SendResponseHeaders(wasmtest.Response(200), true)
	}, "SendResponseHeaders: the plugin already sent a local response (418)")
	s.Complete()
}

func TestMetricsLogsTicks(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t))
	p.ExpectLog("info", "kitchensink started")
	for i := 0; i < 3; i++ {
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("none"), true)
		s.Complete()
	}
	p.ExpectMetric("kitchensink_requests_total", 3)
	p.ExpectMetric("kitchensink_in_flight", 0)

	if got := p.TickPeriod(); got != time.Second {
		t.Fatalf("tick period %v, want 1s", got)
	}
	if n := p.Advance(2500 * time.Millisecond); n != 2 {
		t.Errorf("Advance(2.5s) ran %d ticks, want 2", n)
	}
	if n := p.Advance(500 * time.Millisecond); n != 1 {
		t.Errorf("Advance(0.5s) after 0.5s left over ran %d ticks, want 1", n)
	}
	p.Tick()
	p.ExpectMetric("kitchensink_ticks_total", 4)
	p.ExpectLog("debug", "tick 4")

	msg := mustFail(t, func(tb wasmtest.TB) {
		q := wasmtest.Load(tb, kitchensink(t))
		q.ExpectMetric("kitchensink_requests_total", 5)
	}, `expected metric "kitchensink_requests_total" = 5, but it is 0`, "kitchensink_ticks_total=0")
	_ = msg
}

func TestSharedDataAndQueues(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t), wasmtest.VMID("vm1"))
	p.SetSharedData("greeting", []byte("hi"))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/seen", "x-test", "shared"), true)
	s.ExpectUpstreamHeader("x-greeting", "hi")
	if v, ok := p.SharedData("seen"); !ok || string(v) != "/seen" {
		t.Errorf("shared data seen = %q, %v", v, ok)
	}
	s.Complete()

	p.Enqueue("jobs", []byte("job-1"))
	p.ExpectLog("info", "job: job-1")
	if v, ok := p.SharedData("last_job"); !ok || string(v) != "job-1" {
		t.Errorf("last_job = %q, %v", v, ok)
	}
	if _, ok := p.Dequeue("jobs"); ok {
		t.Errorf("the plugin left an item on the queue")
	}
	mustFail(t, func(tb wasmtest.TB) {
		q := wasmtest.Load(tb, kitchensink(t))
		q.Enqueue("nobody", []byte("x"))
	}, `no plugin registered shared queue "nobody"`)
}

func TestProperties(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t), wasmtest.Name("ks"))
	s := p.NewHTTPStream(wasmtest.WithInfo(func(i *filter.StreamInfo) {
		i.RouteName = "r1"
	}))
	s.SendRequestHeaders(wasmtest.Request("GET", "/p?q=1", "x-test", "properties"), true)
	s.ExpectUpstreamHeader("x-source", "127.0.0.1:50000")
	s.ExpectUpstreamHeader("x-path", "/p?q=1")
	s.ExpectUpstreamHeader("x-plugin-name", "ks")
	s.ExpectUpstreamHeader("x-route-found", "true")
	want := []string{"source.address", "request.path", "plugin_name", "xds.route_name"}
	if got := s.PropertiesRead(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("properties read %q, want %q", got, want)
	}
	s.Complete()
}

func TestHTTPCalls(t *testing.T) {
	t.Run("answered by the test", func(t *testing.T) {
		p := wasmtest.Load(t, kitchensink(t), wasmtest.Cluster("auth", nil))
		cases := []struct {
			status   int
			body     string
			wantCode int // 0: forwarded
		}{{200, "alice-ok", 0}, {403, "no", 401}}
		for _, c := range cases {
			s := p.NewHTTPStream()
			s.SendRequestHeaders(request("callout"), true).ExpectPause()
			call := p.NextHTTPCall()
			if call.Cluster != "auth" || call.Timeout <= 0 {
				t.Errorf("call %s timeout %v", call, call.Timeout)
			}
			if v, _ := call.Headers.Get("x-user"); v != "alice" {
				t.Errorf("call header x-user = %q", v)
			}
			call.Respond(c.status, nil, []byte(c.body))
			if c.wantCode == 0 {
				if s.RequestPaused() {
					t.Fatalf("request still paused after the auth reply:\n%s", strings.Join(s.Trace(), "\n"))
				}
				s.ExpectUpstreamHeader("x-auth", c.body)
			} else {
				s.ExpectLocalResponse(c.wantCode, "denied: "+c.body)
			}
			s.Complete()
		}
		p.ExpectNoHTTPCall()
	})
	t.Run("answered by a responder", func(t *testing.T) {
		p := wasmtest.Load(t, kitchensink(t), wasmtest.Cluster("auth", func(c *wasmtest.HTTPCall) wasmtest.CallResponse {
			return wasmtest.CallResponse{Status: 200, Body: []byte("auto")}
		}))
		s := p.NewHTTPStream()
		// The reply is delivered before Send returns, so the request has
		// already been resumed.
		s.SendRequestHeaders(request("callout"), true)
		s.ExpectUpstreamHeader("x-auth", "auto")
		s.Complete()
	})
	t.Run("failed call", func(t *testing.T) {
		p := wasmtest.Load(t, kitchensink(t), wasmtest.Cluster("auth", nil))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("callout"), true)
		p.NextHTTPCall().Fail()
		s.ExpectLocalResponse(503, "auth unavailable")
		p.ExpectLog("error", "auth call failed")
		s.Complete()
	})
	t.Run("undeclared cluster", func(t *testing.T) {
		p := wasmtest.Load(t, kitchensink(t))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("callout"), true)
		s.ExpectLocalResponse(500, "dispatch failed: bad argument")
		mustFail(t, func(tb wasmtest.TB) {
			q := wasmtest.Load(tb, kitchensink(t), wasmtest.Timeout(200*time.Millisecond))
			q.NewHTTPStream().SendRequestHeaders(request("callout"), true)
			q.NextHTTPCall()
		}, "expected an HTTP call, but the plugin made none", `undeclared cluster "auth"`)
		s.Complete()
	})
}

// Envoy turns a Pause from a headers callback into StopAllIteration: the
// body waits before the plugin (reference §6.1). The harness shows it.
func TestHeadersPauseHoldsBody(t *testing.T) {
	wasm := wasmtest.Build(t, "../examples/json-validation")
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, wasm)
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/"), false).ExpectPause()
		s.SendRequestBody([]byte("{}"), true).ExpectContinue()
	}, "proxy_on_request_body: expected Continue, got no call: dropped: the plugin already sent a local response 403")

	p := wasmtest.Load(t, kitchensink(t), wasmtest.Cluster("auth", nil))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("callout"), false).ExpectPause()
	r := s.SendRequestBody([]byte("early"), true)
	if r.Called || !strings.Contains(r.Status, "held: proxy_on_request_headers paused the stream") {
		t.Errorf("body while headers paused: %+v", r)
	}
	p.NextHTTPCall().Respond(200, nil, []byte("ok"))
	if got := string(s.Upstream().Body); got != "early" {
		t.Errorf("held body reached the upstream as %q, want early", got)
	}
	s.Complete()
}

func TestBufferLimit(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t), wasmtest.BufferLimit(8))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("body-upper"), false)
	s.SendRequestBody([]byte("0123456789"), false)
	s.ExpectNoLocalResponse() // the proxy answers, not the plugin
	s.ExpectClientStatus(413)
	s.ExpectClientHeader("x-plugin", "kitchensink")
	s.Complete()
}

// Bad input: a trap, a stream left paused, a callback that never returns,
// a plugin that refuses its configuration. Each fails with a message
// naming the callback and the reason, within the timeout.
func TestTrap(t *testing.T) {
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, kitchensink(t))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("trap"), true).ExpectContinue()
	}, "proxy_on_request_headers: expected Continue",
		"the plugin trapped in proxy_on_request_headers: panic: assignment to entry in nil map (wasm error: unreachable)",
		"main.__httpContext_.OnHttpRequestHeaders",
		"plugin sent local response 503")

	// FAIL_OPEN: the stream goes on without the plugin.
	p := wasmtest.Load(t, kitchensink(t), wasmtest.FailOpen(), wasmtest.Name("ks"))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(request("trap"), true).ExpectContinue()
	if n, _ := p.HostStat("wasm.ks.runtime_errors"); n != 1 {
		t.Errorf("runtime_errors = %d, want 1", n)
	}
	s.Complete()
}

// TestEndlessLoop: a callback that never returns is stopped by the host's
// call deadline at the harness's timeout, and the failure names it, with
// the guest's stack where it spun; the test process goes on (nothing
// keeps spinning), and the next stream follows the failure policy.
func TestEndlessLoop(t *testing.T) {
	start := time.Now()
	all := mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, kitchensink(t), wasmtest.Timeout(300*time.Millisecond))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("loop"), true).ExpectContinue()
	}, "proxy_on_request_headers: expected Continue",
		"the plugin trapped in proxy_on_request_headers: it did not return within 300ms (an endless loop?) and was stopped by the call deadline",
		"main.__httpContext_.OnHttpRequestHeaders",
		"plugin sent local response 503")
	// How soon is the machine's business (the time includes compiling
	// the plugin); that the 300 ms bound stopped the call is what the
	// message above says.
	t.Logf("the endless loop was reported after %v", time.Since(start))
	if strings.Contains(all, "wasmproxy_meter") {
		t.Errorf("the stack trace shows the host's meter, not only the guest:\n%s", all)
	}
	if call, stuck := wasmtest.Stuck(); stuck {
		t.Errorf("a call is still running: %s", call)
	}
}

// TestEndlessLoopOnABusyMachine: the host's deadline counts CPU time, and
// here the looping guest gets little of it: one P, shared with a
// goroutine that spins, so the guest runs about a millisecond (until its
// check yields) and then waits about ten (until the spinner is
// preempted). Its 300 ms budget would take seconds of wall-clock time; the
// harness stops it after 300 ms of wall-clock time all the same, and
// reports the endless loop, not a stuck call.
func TestEndlessLoopOnABusyMachine(t *testing.T) {
	wasm := kitchensink(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	start := time.Now()
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, wasm, wasmtest.Timeout(300*time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		start = time.Now()
		p.NewHTTPStream().SendRequestHeaders(request("loop"), true).ExpectContinue()
	}, "proxy_on_request_headers: expected Continue",
		"the plugin trapped in proxy_on_request_headers: it did not return within 300ms (an endless loop?) and was stopped by the call deadline",
		"main.__httpContext_.OnHttpRequestHeaders")
	t.Logf("reported %v after the call", time.Since(start))
	if call, stuck := wasmtest.Stuck(); stuck {
		t.Errorf("a call is still running: %s", call)
	}
}

func TestPausedForever(t *testing.T) {
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, kitchensink(t))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("pause-forever"), true).ExpectPause()
		s.Complete()
	}, "the request was still paused when it completed: proxy_on_request_headers returned Pause and the plugin never resumed it",
		"pausing and never resuming")
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, kitchensink(t))
		p.NewHTTPStream().SendRequestHeaders(request("pause-forever"), true)
		// The test ends without completing the stream.
	}, "the request was still paused when the test ended")
	mustFail(t, func(tb wasmtest.TB) {
		p := wasmtest.Load(tb, kitchensink(t))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(request("pause-forever"), true)
		s.SendResponseHeaders(wasmtest.Response(200), true)
	}, "SendResponseHeaders: the upstream never received the request headers: proxy_on_request_headers returned Pause")
}

func TestLoadErrors(t *testing.T) {
	notWasm := filepath.Join(t.TempDir(), "plugin.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\necho hi\n"), 0o644)
	cases := []struct {
		name string
		file string
		opts []wasmtest.Option
		want []string
	}{
		{"not wasm", notWasm, nil, []string{"not a WebAssembly module (bad magic)"}},
		{"missing file", filepath.Join(t.TempDir(), "nope.wasm"), nil, []string{"nope.wasm", "no such file"}},
		{"configuration rejected", kitchensink(t), []wasmtest.Option{wasmtest.PluginConfig("reject")},
			[]string{"proxy_on_configure returned false", "[critical] plugin: configuration rejected on purpose"}},
		{"bad log level", kitchensink(t), []wasmtest.Option{wasmtest.LogLevel("loud")}, []string{`unknown log level "loud"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mustFail(t, func(tb wasmtest.TB) { wasmtest.Load(tb, c.file, c.opts...) }, c.want...)
		})
	}
}

func TestBuildError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module broken\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644)
	mustFail(t, func(tb wasmtest.TB) { wasmtest.Build(tb, dir) }, "building plugin", "undefined: undefinedThing")
}

func TestTCP(t *testing.T) {
	p := wasmtest.Load(t, kitchensink(t), wasmtest.PluginConfig("tcp"))
	c := p.NewTCPStream()
	c.Connect().ExpectContinue()
	p.ExpectLog("info", "connection 2 opened")
	c.SendDownstream([]byte("hel"), false).ExpectPause()
	c.SendDownstream([]byte("lo\n"), false).ExpectContinue()
	c.ExpectUpstream("> hello\n")
	c.SendUpstream([]byte("world\n"), true).ExpectContinue()
	c.ExpectClient("WORLD\n")
	c.Close()
	p.ExpectLog("info", "connection 2 done")

	c = p.NewTCPStream()
	c.Connect()
	c.SendDownstream([]byte("quit"), false).ExpectPause()
	if closed, details := c.Closed(); !closed || details == "" {
		t.Errorf("closed %v (%q), want closed by the plugin", closed, details)
	}
	c.Close()

	mustFail(t, func(tb wasmtest.TB) {
		q := wasmtest.Load(tb, kitchensink(t), wasmtest.PluginConfig("tcp"))
		c := q.NewTCPStream()
		c.Connect()
		c.SendDownstream([]byte("no newline"), false)
		c.Close()
	}, "the connection was still paused when it closed: proxy_on_downstream_data returned Pause")
}
