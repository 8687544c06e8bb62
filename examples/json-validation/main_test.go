package main

import (
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// The seed's transcript against the compiled plugin (GOOS=wasip1) on
// wasmproxy's real host, with the configuration from envoy.yaml.
func TestSeedTranscript(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{ "requiredKeys": ["id", "token"] }`))
	cases := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int // 0: the request reaches the upstream unchanged
		wantBody    string
	}{
		{"no content type", "", "", 403, "content-type must be provided"},
		{"not JSON", "application/json", "not JSON", 403, "invalid payload"},
		{"a required key missing", "application/json", `{"id": "xxx"}`, 403, "invalid payload"},
		{"valid", "application/json", `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := p.NewHTTPStream()
			var headers []string
			if c.contentType != "" {
				headers = []string{"content-type", c.contentType}
			}
			s.SendRequestHeaders(wasmtest.Request("POST", "/", headers...), c.body == "")
			if c.body != "" {
				// In two chunks: the plugin waits for the whole body.
				half := len(c.body) / 2
				s.SendRequestBody([]byte(c.body[:half]), false).ExpectPause()
				s.SendRequestBody([]byte(c.body[half:]), true)
			}
			if c.wantStatus != 0 {
				s.ExpectLocalResponse(c.wantStatus, c.wantBody)
				s.ExpectClientStatus(c.wantStatus)
			} else {
				s.ExpectNoLocalResponse()
				if got := string(s.Upstream().Body); got != c.body {
					t.Errorf("the upstream got %q, want %q", got, c.body)
				}
				s.SendResponseHeaders(wasmtest.Response(200), false).ExpectContinue()
				s.SendResponseBody([]byte("hello from the server\n"), true).ExpectContinue()
				s.ExpectClientStatus(200)
			}
			s.Complete()
		})
	}
}

func TestConfiguration(t *testing.T) {
	wasm := wasmtest.Build(t, ".")
	t.Run("no configuration requires nothing", func(t *testing.T) {
		p := wasmtest.Load(t, wasm)
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		s.SendRequestBody([]byte(`{}`), true).ExpectContinue()
		s.Complete()
	})
	t.Run("invalid configuration is rejected", func(t *testing.T) {
		failures := wasmtest.Capture(func(t wasmtest.TB) {
			wasmtest.Load(t, wasm, wasmtest.PluginConfig(`{"requiredKeys": [`))
		})
		if len(failures) == 0 || !strings.Contains(failures[0], "the plugin configuration is not a valid json") {
			t.Errorf("want a load failure quoting the plugin's critical log, got %q", failures)
		}
	})
}
