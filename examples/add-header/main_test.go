package main

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// The compiled plugin (GOOS=wasip1) on wasmproxy's real host.
func TestAddsResponseHeader(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	p.ExpectLog("debug", "ready to process streams")
	cases := []struct {
		name     string
		response wasmtest.Headers
		body     string
	}{
		{"no body", wasmtest.Response(204), ""},
		{"with a body", wasmtest.Response(200, "content-type", "text/plain"), "hello\n"},
		{"an error", wasmtest.Response(503), "unavailable\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := p.NewHTTPStream()
			s.SendRequestHeaders(wasmtest.Request("GET", "/"), true).ExpectContinue()
			s.SendResponseHeaders(c.response, c.body == "").ExpectContinue()
			if c.body != "" {
				s.SendResponseBody([]byte(c.body), true).ExpectContinue()
			}
			s.ExpectClientHeader("resp-header-demo", "added by our filter")
			if got := string(s.Client().Body); got != c.body {
				t.Errorf("the client got body %q, want %q", got, c.body)
			}
			s.Complete()
		})
	}
}

// The plugin only touches responses: the request passes unchanged.
func TestLeavesRequestAlone(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("POST", "/upload", "content-type", "text/plain"), false).ExpectContinue()
	s.SendRequestBody([]byte("data"), true).ExpectContinue()
	if got := s.Upstream(); string(got.Body) != "data" || got.Headers.Len() != 5 {
		t.Errorf("the upstream got %v %q", got.Headers.Pairs(), got.Body)
	}
	s.Complete()
}
