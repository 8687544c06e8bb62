package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/wasm"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// seedTranscript is the seed's four curl exchanges.
var seedTranscript = []struct {
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

// replayTranscript sends the seed's exchanges to p and checks its answers.
func replayTranscript(t *testing.T, p *wasmtest.Plugin) {
	for _, c := range seedTranscript {
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

// The seed's transcript against the compiled plugin (GOOS=wasip1) on
// wasmproxy's real host, with the configuration from envoy.yaml.
func TestSeedTranscript(t *testing.T) {
	replayTranscript(t, wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{ "requiredKeys": ["id", "token"] }`)))
}

// TestSeedTranscriptWithoutConfiguration: the seed's first envoy.yaml
// gives the plugin no configuration; the seed's keys id and token are
// then required, so the same four answers come back.
func TestSeedTranscriptWithoutConfiguration(t *testing.T) {
	replayTranscript(t, wasmtest.Load(t, wasmtest.Build(t, ".")))
}

// TestLargeInvalidBody: a 700 KB body that is not JSON is refused with
// the seed's 403 within the proxy's default call deadline, and the log
// line about it is short and does not quote the body (which may carry
// a token). The seed's code logged the body whole with %v, which took
// longer than the deadline: the instance was killed and the client got
// a 503.
func TestLargeInvalidBody(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.Name("json"),
		wasmtest.Env(wasm.EnvCallDeadline, strconv.FormatInt(wasm.DefaultCallDeadline.Milliseconds(), 10)))
	body := `{"id": "xxx", "token": "secret-` + strings.Repeat("wasmproxy-", 70_000) // 700 KB, never closed
	for i := range 2 {
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		s.SendRequestBody([]byte(body), true)
		s.ExpectLocalResponse(403, "invalid payload")
		s.Complete()
		if n, _ := p.HostStat("wasm.json.runtime_errors"); n != 0 {
			t.Fatalf("request %d: the plugin trapped (%d runtime errors)", i, n)
		}
	}
	p.ExpectLog("error", fmt.Sprintf("body is not a valid json (%d bytes)", len(body)))
	for _, e := range p.Logs() {
		if len(e.Message) > 200 || strings.Contains(e.Message, "secret-") || strings.Contains(e.Message, "wasmproxy-wasmproxy-") {
			t.Errorf("a log line quotes the body (%d bytes): %.200s", len(e.Message), e.Message)
		}
	}
}

func TestConfiguration(t *testing.T) {
	wasmFile := wasmtest.Build(t, ".")
	t.Run("no requiredKeys requires the seed's keys", func(t *testing.T) {
		p := wasmtest.Load(t, wasmFile, wasmtest.PluginConfig(`{}`))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		s.SendRequestBody([]byte(`{"id": "xxx"}`), true)
		s.ExpectLocalResponse(403, "invalid payload")
		s.Complete()
		p.ExpectLog("error", "required key (token) is missing (body of 13 bytes)")
	})
	t.Run("an empty requiredKeys requires nothing", func(t *testing.T) {
		p := wasmtest.Load(t, wasmFile, wasmtest.PluginConfig(`{"requiredKeys": []}`))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		s.SendRequestBody([]byte(`{}`), true).ExpectContinue()
		s.Complete()
	})
	for _, c := range []struct{ name, conf, want string }{
		{"not JSON", `{"requiredKeys": [`, `the plugin configuration is not a valid json: "{\"requiredKeys\": ["`},
		{"not an array", `{"requiredKeys": "id"}`, `requiredKeys must be an array of strings, not "id"`},
		{"not a string", `{"requiredKeys": ["id", 7]}`, `requiredKeys[1] must be a string, not 7`},
	} {
		t.Run("invalid configuration is rejected: "+c.name, func(t *testing.T) {
			failures := wasmtest.Capture(func(t wasmtest.TB) {
				wasmtest.Load(t, wasmFile, wasmtest.PluginConfig(c.conf))
			})
			if len(failures) == 0 || !strings.Contains(failures[0], c.want) {
				t.Errorf("want a load failure quoting the plugin's critical log %q, got %q", c.want, failures)
			}
		})
	}
}
