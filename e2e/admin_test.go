package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postEmpty(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminAgainstRunningProxy checks the admin API of a proxy that has
// served the seed's traffic: readiness, stats with Wasm and HTTP
// counters, Prometheus output, the config dump, and log levels.
func TestAdminAgainstRunningProxy(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	for _, ex := range seedTranscript {
		var body io.Reader
		if ex.body != "" {
			body = strings.NewReader(ex.body)
		}
		post(t, http.DefaultClient, "http://"+in.listen+"/", ex.contentType, body)
	}
	base := "http://" + in.admin

	if code, body := get(t, base+"/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("/ready = %d %q", code, body)
	}
	code, body := get(t, base+"/stats")
	if code != 200 {
		t.Fatalf("/stats = %d", code)
	}
	for _, want := range []string{
		"http.ingress_http.downstream_rq_4xx: 3",
		"http.ingress_http.downstream_rq_2xx: 2", // the proxied 200 and the upstream listener's own
		"cluster.web_service.upstream_rq_200: 1",
		"wasm.envoy.wasm.runtime.v8.created:",
		"server.live: 1",
		"server.goroutines: ",
		"server.memory_allocated: ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/stats lacks %q:\n%s", want, body)
		}
	}
	code, body = get(t, base+"/stats/prometheus")
	if code != 200 || !strings.Contains(body, `envoy_http_downstream_rq_xx{envoy_response_code_class="4",envoy_http_conn_manager_prefix="ingress_http"} 3`) {
		t.Errorf("/stats/prometheus = %d:\n%s", code, body)
	}
	code, body = get(t, base+"/config_dump")
	var dump struct {
		Configs []struct {
			Type      string          `json:"@type"`
			Bootstrap json.RawMessage `json:"bootstrap"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil || len(dump.Configs) == 0 ||
		!strings.Contains(string(dump.Configs[0].Bootstrap), "web_service") {
		t.Errorf("/config_dump = %d %v:\n%.400s", code, err, body)
	}
	if code, body := get(t, base+"/listeners"); code != 200 || !strings.Contains(body, "main::"+in.listen) {
		t.Errorf("/listeners = %d %q", code, body)
	}
	if code, body := get(t, base+"/clusters"); code != 200 || !strings.Contains(body, "web_service::") {
		t.Errorf("/clusters = %d %q", code, body)
	}
	// A change asked with GET is refused and changes nothing.
	if code, _ := get(t, base+"/logging?wasm=debug"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /logging = %d, want 405", code)
	}
	if _, body := postEmpty(t, base+"/logging"); !strings.Contains(body, "wasm: info") {
		t.Errorf("GET must not change the level:\n%s", body)
	}
	if code, body := postEmpty(t, base+"/logging?wasm=debug"); code != 200 || !strings.Contains(body, "wasm: debug") {
		t.Errorf("POST /logging?wasm=debug = %d:\n%s", code, body)
	}
}

// TestQuitAndSignalDrain: POST /quitquitquit and SIGTERM stop the proxy
// with exit 0 after in-flight requests finish.
func TestQuitAndSignalDrain(t *testing.T) {
	t.Run("quitquitquit", func(t *testing.T) {
		dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
		in := run(t, dir, listen, admin, "-c", "envoy.yaml")
		if code, body := postEmpty(t, "http://"+in.admin+"/quitquitquit"); code != 200 || body != "OK\n" {
			t.Fatalf("/quitquitquit = %d %q", code, body)
		}
		if code := in.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit %d\n%s", code, in.Logs())
		}
	})
	t.Run("SIGTERM with a request in flight", func(t *testing.T) {
		dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
		in := run(t, dir, listen, admin, "-c", "envoy.yaml")
		// The body arrives slowly: the request is in flight when the
		// signal lands and must still be answered.
		pr, pw := io.Pipe()
		type result struct {
			code int
			body string
		}
		done := make(chan result, 1)
		go func() {
			resp, body := post(t, http.DefaultClient, "http://"+in.listen+"/", "application/json", pr)
			done <- result{resp.StatusCode, body}
		}()
		pw.Write([]byte(`{"id": "xxx", `))
		// The stream has begun once the connection manager counts it.
		eventually(t, 20*time.Second, "the request in flight", func() (bool, string) {
			_, body := get(t, "http://"+in.admin+"/stats?filter=downstream_rq_active")
			return strings.Contains(body, "downstream_rq_active: 1"), body
		})
		in.cmd.Process.Signal(os.Interrupt)
		waitFor(t, in, 20*time.Second, "shutting down on signal")
		pw.Write([]byte(`"token": "y"}`))
		pw.Close()
		r := <-done
		if r.code != 200 || r.body != "hello from the server\n" {
			t.Errorf("in-flight request got %d %q", r.code, r.body)
		}
		if code := in.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit %d\n%s", code, in.Logs())
		}
	})
}

// TestPluginBuildErrors: `wasmproxy plugin build` says why it failed.
func TestPluginBuildErrors(t *testing.T) {
	bin := wasmproxyBinary(t)
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "go.mod"), []byte("module broken\n\ngo 1.24\n"), 0o644)
	os.WriteFile(filepath.Join(broken, "main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644)
	out, err := exec.Command(bin, "plugin", "build", broken, "-o", filepath.Join(t.TempDir(), "x.wasm")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "undefined: undefinedThing") || !strings.Contains(string(out), "building plugin") {
		t.Errorf("broken plugin: err=%v\n%s", err, out)
	}
	// Without Go on PATH the error says so.
	cmd := exec.Command(bin, "plugin", "build", broken)
	cmd.Env = []string{"PATH=" + t.TempDir(), "HOME=" + t.TempDir()}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Go toolchain is not installed") {
		t.Errorf("no Go: err=%v\n%s", err, out)
	}
	// A good plugin builds.
	dst := filepath.Join(t.TempDir(), "ok.wasm")
	out, err = exec.Command(bin, "plugin", "build", filepath.Join(repoRoot, "examples/add-header"), "-o", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("build add-header: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(dst); len(b) < 8 || string(b[:4]) != "\x00asm" {
		t.Errorf("output is not a wasm module")
	}
}
