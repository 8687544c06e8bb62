package main

import (
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// headers builds reply headers from key, value pairs.
func headers(kv ...string) wasmtest.Headers {
	var h wasmtest.Headers
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, filter.Pair{Key: kv[i], Value: kv[i+1]})
	}
	return h
}

const testConfig = `{"cluster": "auth", "path": "/check", "timeout_ms": 500}`

func load(t *testing.T, opts ...wasmtest.Option) *wasmtest.Plugin {
	t.Helper()
	opts = append([]wasmtest.Option{wasmtest.PluginConfig(testConfig), wasmtest.Cluster("auth", nil)}, opts...)
	return wasmtest.Load(t, wasmtest.Build(t, "."), opts...)
}

// startRequest sends request headers that the plugin must hold while it
// asks the auth service, and returns the call it made.
func startRequest(t *testing.T, p *wasmtest.Plugin, extra ...string) (*wasmtest.HTTPStream, *wasmtest.HTTPCall) {
	t.Helper()
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/orders", extra...), true).ExpectPause()
	call := p.NextHTTPCall()
	if call.Cluster != "auth" {
		t.Errorf("the call went to cluster %q, want auth", call.Cluster)
	}
	for k, want := range map[string]string{":method": "GET", ":path": "/check", ":authority": "auth"} {
		if got, _ := call.Headers.Get(k); got != want {
			t.Errorf("auth call %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := call.Headers.Get("x-auth-user"); ok {
		t.Errorf("the client's x-auth-user reached the auth service: %v", call.Headers.Pairs())
	}
	// wasmtest derives the timeout from the call's deadline, so it reads
	// a little under what the plugin asked for.
	if ms := call.Timeout.Milliseconds(); ms > 500 || ms < 400 {
		t.Errorf("auth call timeout %v, want 500ms", call.Timeout)
	}
	if s.Upstream().Headers != nil {
		t.Fatalf("the request reached the upstream before the auth service answered")
	}
	return s, call
}

// finish plays the upstream's 200 and completes the stream.
func finish(s *wasmtest.HTTPStream) {
	s.SendResponseHeaders(wasmtest.Response(200), false).ExpectContinue()
	s.SendResponseBody([]byte("orders\n"), true).ExpectContinue()
	s.ExpectClientStatus(200)
	s.Complete()
}

func TestAllowedUserFromBody(t *testing.T) {
	p := load(t)
	s, call := startRequest(t, p, "authorization", "Bearer alice-token", "x-auth-user", "root")
	if got, _ := call.Headers.Get("authorization"); got != "Bearer alice-token" {
		t.Errorf("auth call authorization = %q", got)
	}
	call.Respond(200, headers("content-type", "text/plain"), []byte("alice\n"))
	s.ExpectNoLocalResponse()
	if got := s.Upstream().Headers.Values("x-auth-user"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream x-auth-user = %q, want exactly [alice] (the client's root must be gone)", got)
	}
	finish(s)
}

func TestAllowedUserFromHeader(t *testing.T) {
	p := load(t)
	s, call := startRequest(t, p, "authorization", "Bearer bob-token")
	call.Respond(200, headers("x-auth-user", "bob"), []byte("ok"))
	s.ExpectUpstreamHeader("x-auth-user", "bob")
	s.ExpectUpstreamHeader("authorization", "Bearer bob-token")
	finish(s)
}

func TestDeniedGets403WithTheAuthBody(t *testing.T) {
	p := load(t)
	s, call := startRequest(t, p, "authorization", "Bearer wrong", "x-auth-user", "alice")
	call.Respond(401, headers("content-type", "text/plain", "www-authenticate", `Bearer realm="demo"`, "x-internal", "secret"),
		[]byte("unknown or missing token\n"))
	s.ExpectLocalResponse(403, "unknown or missing token\n")
	s.ExpectClientStatus(403)
	s.ExpectClientHeader("content-type", "text/plain")
	s.ExpectClientHeader("www-authenticate", `Bearer realm="demo"`)
	if _, ok := s.Client().Headers.Get("x-internal"); ok {
		t.Errorf("an auth service header other than content-type/www-authenticate reached the client")
	}
	if s.Upstream().Headers != nil {
		t.Errorf("a denied request reached the upstream")
	}
	s.Complete()
}

func TestNoAuthorizationHeaderIsAskedAnyway(t *testing.T) {
	p := load(t)
	s, call := startRequest(t, p)
	if _, ok := call.Headers.Get("authorization"); ok {
		t.Errorf("the auth call has an authorization header the client did not send")
	}
	call.Respond(403, nil, []byte("no token"))
	s.ExpectLocalResponse(403, "no token")
	s.Complete()
}

func TestAuthServiceDown(t *testing.T) {
	p := load(t)
	s, call := startRequest(t, p, "authorization", "Bearer alice-token")
	call.Fail()
	s.ExpectLocalResponse(503, "auth service unavailable\n")
	s.ExpectClientHeader("content-type", "text/plain")
	p.ExpectLog("warning", "the auth service did not answer")
	s.Complete()
}

func TestAuthServiceErrorAndBadAllow(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  int
		headers wasmtest.Headers
		body    string
	}{
		{"5xx", 500, nil, "stack trace the client must not see"},
		{"200 without a user", 200, nil, ""},
		{"200 with a control character", 200, nil, "al\x01ice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := load(t)
			s, call := startRequest(t, p, "authorization", "Bearer x")
			call.Respond(c.status, c.headers, []byte(c.body))
			s.ExpectLocalResponse(503, "auth service unavailable\n")
			if s.Upstream().Headers != nil {
				t.Errorf("the request reached the upstream")
			}
			s.Complete()
		})
	}
}

// status_on_error and user_header come from the configuration.
func TestConfiguredErrorStatusAndHeader(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.Cluster("authz", nil),
		wasmtest.PluginConfig(`{"cluster": "authz", "path": "/v1/check", "user_header": "x-user", "status_on_error": 500}`))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-user", "forged"), true).ExpectPause()
	call := p.NextHTTPCall()
	if got, _ := call.Headers.Get(":path"); call.Cluster != "authz" || got != "/v1/check" {
		t.Errorf("call to %s %s", call.Cluster, got)
	}
	call.Respond(200, headers("x-user", "carol"), nil)
	if got := s.Upstream().Headers.Values("x-user"); len(got) != 1 || got[0] != "carol" {
		t.Errorf("upstream x-user = %q, want [carol]", got)
	}
	finish(s)

	s = p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/"), true).ExpectPause()
	p.NextHTTPCall().Fail()
	s.ExpectLocalResponse(500, "auth service unavailable\n")
	s.Complete()
}

// A cluster the proxy does not know: DispatchHttpCall fails at once.
func TestUnknownCluster(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"cluster": "nowhere"}`))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/"), true).ExpectPause()
	s.ExpectLocalResponse(503, "auth service unavailable\n")
	p.ExpectNoHTTPCall()
	p.ExpectLog("error", `calling the auth service (cluster "nowhere")`)
	s.Complete()
}

// The request body waits behind the paused headers until the auth
// service allows the request.
func TestBodyWaitsForTheDecision(t *testing.T) {
	p := load(t)
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("POST", "/upload", "authorization", "Bearer alice-token"), false).ExpectPause()
	if r := s.SendRequestBody([]byte("payload"), true); r.Called {
		t.Errorf("the body reached the plugin before the decision: %s", r.Status)
	}
	p.NextHTTPCall().Respond(200, nil, []byte("alice"))
	if got := s.Upstream(); string(got.Body) != "payload" || !got.Complete {
		t.Errorf("upstream body %q complete=%v", got.Body, got.Complete)
	}
	finish(s)
}

func TestBadConfigurationIsRefused(t *testing.T) {
	wasm := wasmtest.Build(t, ".")
	for _, cfg := range []string{`not json`, `{"path": "check"}`, `{"unknown": 1}`, `{"user_header": "X-User"}`, `{"status_on_error": 42}`} {
		failures := wasmtest.Capture(func(t wasmtest.TB) { wasmtest.Load(t, wasm, wasmtest.PluginConfig(cfg)) })
		if len(failures) == 0 || !strings.Contains(strings.Join(failures, "\n"), "invalid plugin configuration") {
			t.Errorf("configuration %s: load failures %q, want the plugin's refusal", cfg, failures)
		}
	}
}

// TestCases runs cases.yaml, the checks `wasmproxy plugin test main.wasm
// cases.yaml` makes.
func TestCases(t *testing.T) {
	f, err := wasmtest.ReadCaseFile("cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wasm := wasmtest.Build(t, ".")
	for i, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) { f.RunCase(t, wasm, i) })
	}
}
