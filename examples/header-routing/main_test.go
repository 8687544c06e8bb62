package main

import (
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// route sends a request with extra headers and checks the route header
// the upstream got; the stream's route name (what the proxy's router
// matched) comes back as x-route-name.
func route(t *testing.T, p *wasmtest.Plugin, routeName, want string, extra ...string) {
	t.Helper()
	s := p.NewHTTPStream(wasmtest.WithInfo(func(i *filter.StreamInfo) { i.RouteName = routeName }))
	s.SendRequestHeaders(wasmtest.Request("GET", "/", extra...), true).ExpectContinue()
	if got := s.Upstream().Headers.Values("x-route-to"); len(got) != 1 || got[0] != want {
		t.Errorf("headers %q: upstream x-route-to = %q, want exactly [%s]", extra, got, want)
	}
	s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
	s.ExpectClientHeader("x-route-name", routeName)
	s.Complete()
}

func TestRoutesByVersion(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	route(t, p, "v2", "v2", "x-version", "v2")
	route(t, p, "v1", "v1", "x-version", "v1")
	route(t, p, "v1", "v1")                      // no header: the default
	route(t, p, "v1", "v1", "x-version", "v3")   // unknown: the default
	route(t, p, "v2", "v2", "x-version", " V2 ") // case and spaces do not matter
	route(t, p, "v1", "v1", "x-route-to", "v2")  // the client cannot pick the route
	route(t, p, "v2", "v2", "x-route-to", "v1", "x-version", "v2")
	for _, l := range p.Logs() {
		if l.Level == "warning" || l.Level == "error" {
			t.Errorf("unexpected log: %s", l)
		}
	}
	p.ExpectLog("debug", `unknown x-version "v3", routing to v1`)
}

func TestConfiguredHeadersAndVersions(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."),
		wasmtest.PluginConfig(`{"header": "x-canary", "route_header": "x-pool", "versions": ["stable", "canary"], "default": "stable"}`))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-canary", "canary", "x-version", "v2"), true).ExpectContinue()
	s.ExpectUpstreamHeader("x-pool", "canary")
	if _, ok := s.Upstream().Headers.Get("x-route-to"); ok {
		t.Errorf("x-route-to set under another route_header")
	}
	s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
	s.Complete()
}

func TestBadConfigurationIsRefused(t *testing.T) {
	wasm := wasmtest.Build(t, ".")
	for _, cfg := range []string{`{`, `{"default": "v9"}`, `{"header": "x-a", "route_header": "x-a"}`, `{"header": ""}`, `{"routes": {}}`} {
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
