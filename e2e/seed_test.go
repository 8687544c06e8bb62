package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/internal/prereq"
)

const seedConfig = "examples/json-validation/envoy.yaml"

// exchange is one request of the seed's transcript and the answer Envoy
// gave.
type exchange struct {
	name        string
	contentType string
	body        string
	wantStatus  int
	wantBody    string
}

var seedTranscript = []exchange{
	{"no content-type", "", "", 403, "content-type must be provided"},
	{"not JSON", "application/json", "not JSON", 403, "invalid payload"},
	{"missing token", "application/json", `{"id": "xxx"}`, 403, "invalid payload"},
	{"valid", "application/json", `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`, 200, "hello from the server\n"},
}

func post(t *testing.T, c *http.Client, url, contentType string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func checkExchange(t *testing.T, ex exchange, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != ex.wantStatus || body != ex.wantBody {
		t.Fatalf("%s: got %d %q, want %d %q", ex.name, resp.StatusCode, body, ex.wantStatus, ex.wantBody)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("%s: content-type %q, want text/plain", ex.name, got)
	}
	if resp.Header.Get("Date") == "" || resp.Header.Get("Server") != "wasmproxy" {
		t.Errorf("%s: date %q server %q", ex.name, resp.Header.Get("Date"), resp.Header.Get("Server"))
	}
	if got, want := resp.ContentLength, int64(len(ex.wantBody)); got != want {
		t.Errorf("%s: content-length %d, want %d", ex.name, got, want)
	}
	_, hasUST := resp.Header["X-Envoy-Upstream-Service-Time"]
	if hasUST != (ex.wantStatus == 200) {
		t.Errorf("%s: x-envoy-upstream-service-time present=%v, want %v", ex.name, hasUST, ex.wantStatus == 200)
	}
}

// TestSeedTranscript replays the seed's four curl exchanges against the
// seed's config with the seed's plugin built from source.
func TestSeedTranscript(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	url := "http://" + in.listen + "/"

	for _, ex := range seedTranscript {
		t.Run("http1/"+ex.name, func(t *testing.T) {
			var body io.Reader
			if ex.body != "" {
				body = strings.NewReader(ex.body)
			}
			resp, got := post(t, http.DefaultClient, url, ex.contentType, body)
			checkExchange(t, ex, resp, got)
		})
	}

	h2c := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	for _, ex := range seedTranscript {
		t.Run("h2c/"+ex.name, func(t *testing.T) {
			var body io.Reader
			if ex.body != "" {
				body = strings.NewReader(ex.body)
			}
			resp, got := post(t, h2c, url, ex.contentType, body)
			if resp.ProtoMajor != 2 {
				t.Fatalf("not HTTP/2: %s", resp.Proto)
			}
			checkExchange(t, ex, resp, got)
		})
	}

	t.Run("body in many chunks is validated whole", func(t *testing.T) {
		for _, tc := range []struct {
			parts []string
			want  int
		}{
			{[]string{`{"id": `, `"xxx", `, `"tok`, `en": "y"}`}, 200},
			{[]string{`{"id": `, `"xxx", `, `"other": 1}`}, 403},
		} {
			pr, pw := io.Pipe()
			go func() {
				for _, p := range tc.parts {
					pw.Write([]byte(p))
					time.Sleep(15 * time.Millisecond)
				}
				pw.Close()
			}()
			resp, body := post(t, http.DefaultClient, url, "application/json", pr)
			if resp.StatusCode != tc.want {
				t.Errorf("chunks %q: got %d %q, want %d", tc.parts, resp.StatusCode, body, tc.want)
			}
		}
	})

	t.Run("curl", func(t *testing.T) {
		curl, err := prereq.FindCurl()
		prereq.Skip(t, err)
		out, err := exec.Command(curl, "-si", "-X", "POST", "http://"+in.listen, "-H", "Content-Type: application/json",
			"--data", `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		text := strings.ReplaceAll(string(out), "\r\n", "\n")
		for _, re := range []string{
			`(?m)^HTTP/1.1 200 OK$`, `(?mi)^content-length: 22$`, `(?mi)^content-type: text/plain$`,
			`(?mi)^date: .+ GMT$`, `(?mi)^server: wasmproxy$`, `(?mi)^x-envoy-upstream-service-time: \d+$`,
			`\n\nhello from the server\n$`,
		} {
			if !regexp.MustCompile(re).MatchString(text) {
				t.Errorf("curl output does not match %s:\n%s", re, text)
			}
		}
	})
}

// TestSeedFirstConfig (issue 10, item 10) runs the seed's first
// envoy.yaml, which gives the plugin no configuration, with the example
// plugin built from source: the plugin's defaults are the seed's keys,
// so the seed's four transcripts come back as they are. Two 700 KB
// bodies that are not JSON get the seed's 403 within the default call
// deadline (the seed's code logged them whole with %v, ran past the
// deadline and killed both instances), and the plugin's log line about
// them is one short line that does not quote the body.
func TestSeedFirstConfig(t *testing.T) {
	dir, listen, admin := setup(t, seedFirstConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	url := "http://" + in.listen + "/"
	for _, ex := range seedTranscript {
		t.Run(ex.name, func(t *testing.T) {
			var body io.Reader
			if ex.body != "" {
				body = strings.NewReader(ex.body)
			}
			resp, got := post(t, http.DefaultClient, url, ex.contentType, body)
			checkExchange(t, ex, resp, got)
		})
	}

	big := `{"id": "xxx", "token": "secret-` + strings.Repeat("wasmproxy-", 70_000) // 700 KB, never closed
	// Two: as many as the proxy has instances.
	for i := range 2 {
		resp, got := post(t, http.DefaultClient, url, "application/json", strings.NewReader(big))
		if resp.StatusCode != 403 || got != "invalid payload" {
			t.Fatalf("700 KB invalid JSON body %d: got %d %q, want 403 \"invalid payload\"", i, resp.StatusCode, got)
		}
	}
	valid := seedTranscript[len(seedTranscript)-1]
	resp, got := post(t, http.DefaultClient, url, valid.contentType, strings.NewReader(valid.body))
	checkExchange(t, valid, resp, got)
	if n := adminStat(t, admin, "wasm..runtime_errors"); n != 0 {
		t.Errorf("wasm..runtime_errors = %d, want 0", n)
	}

	logs := in.Logs()
	want := fmt.Sprintf("body is not a valid json (%d bytes)", len(big))
	if strings.Count(logs, want) != 2 {
		t.Errorf("logs: want %q twice", want)
	}
	for _, line := range strings.Split(logs, "\n") {
		if len(line) > 1000 || strings.Contains(line, "secret-") || strings.Contains(line, "wasmproxy-wasmproxy-") {
			t.Errorf("a log line of %d bytes quotes the body: %.300s", len(line), line)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%.5000s", logs)
	}
}

// TestRequiredKeysFromConfiguration: the plugin reads its required keys
// from the plugin configuration, so changing the config changes answers.
func TestRequiredKeysFromConfiguration(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		return strings.Replace(s, `{ "requiredKeys": ["id", "token"] }`, `{ "requiredKeys": ["id"] }`, 1)
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	resp, body := post(t, http.DefaultClient, "http://"+in.listen+"/", "application/json", strings.NewReader(`{"id": "xxx"}`))
	if resp.StatusCode != 200 || body != "hello from the server\n" {
		t.Fatalf("requiredKeys [id]: got %d %q, want 200", resp.StatusCode, body)
	}
	resp, body = post(t, http.DefaultClient, "http://"+in.listen+"/", "application/json", strings.NewReader(`{"token": "xxx"}`))
	if resp.StatusCode != 403 || body != "invalid payload" {
		t.Fatalf("requiredKeys [id] without id: got %d %q, want 403", resp.StatusCode, body)
	}
}

// TestAddHeader: the second seed's filter adds its header to responses
// and logs at debug when it starts.
func TestAddHeader(t *testing.T) {
	dir, listen, admin := setup(t, "examples/add-header/envoy.yaml", plugin(t, "examples/add-header"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--component-log-level", "wasm:debug")
	resp, err := http.Get("http://" + in.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from the server\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Resp-Header-Demo"); got != "added by our filter" {
		t.Errorf("resp-header-demo = %q", got)
	}
	if !strings.Contains(in.Logs(), "ready to process streams") {
		t.Errorf("no debug log from the plugin's start:\n%s", in.Logs())
	}
}

// TestEnvoyFlagsAndBufferLimit: Envoy's command-line options are
// accepted, and a body larger than per_connection_buffer_limit_bytes that
// the plugin asks to buffer is refused with 413, as Envoy does.
func TestEnvoyFlagsAndBufferLimit(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		return strings.Replace(s, "    - name: main\n", "    - name: main\n      per_connection_buffer_limit_bytes: 1024\n", 1)
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "1", "-l", "warning",
		"--component-log-level", "wasm:error,http:info", "--base-id", "7")
	big := `{"id": "xxx", "token": "` + strings.Repeat("x", 4096) + `"}`
	resp, body := post(t, http.DefaultClient, "http://"+in.listen+"/", "application/json", strings.NewReader(big))
	if resp.StatusCode != 413 || body != "Payload Too Large" {
		t.Fatalf("oversized body: got %d %q, want 413 Payload Too Large", resp.StatusCode, body)
	}
	small := `{"id": "xxx", "token": "y"}`
	resp, body = post(t, http.DefaultClient, "http://"+in.listen+"/", "application/json", strings.NewReader(small))
	if resp.StatusCode != 200 {
		t.Fatalf("small body after 413: got %d %q", resp.StatusCode, body)
	}
	code, info := get(t, "http://"+in.admin+"/server_info")
	if code != 200 || !strings.Contains(info, `"concurrency": 1`) || !strings.Contains(info, `"base_id": "7"`) {
		t.Errorf("/server_info does not reflect the flags:\n%s", info)
	}
}
