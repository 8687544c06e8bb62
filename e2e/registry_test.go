package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testregistry"
)

// cli runs the wasmproxy binary with args and returns stdout; a non-zero
// exit fails the test unless wantFail.
func cli(t *testing.T, wantFail bool, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(wasmproxyBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantFail {
		t.Fatalf("wasmproxy %s: err=%v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// secureRegistry starts a registry with TLS and basic auth; the
// children trust its CA through SSL_CERT_FILE.
func secureRegistry(t *testing.T) (reg *testregistry.Registry, dockerConfig string) {
	t.Helper()
	reg = testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{"ci": "pa55"}})
	t.Setenv("SSL_CERT_FILE", reg.CAFile)
	return reg, reg.DockerConfig(t, "ci", "pa55")
}

// TestPushPullCLI: `plugin push` in each layout then `plugin pull`
// against a TLS registry with basic auth gives back the same bytes, and
// --json reports the digests.
func TestPushPullCLI(t *testing.T) {
	reg, dockerConfig := secureRegistry(t)
	wasm := plugin(t, "examples/add-header")
	want, _ := os.ReadFile(wasm)
	for _, layout := range []string{"oci", "docker", "wasme", "wasm"} {
		t.Run(layout, func(t *testing.T) {
			url := fmt.Sprintf("oci://%s/add-header:%s", reg.Host, layout)
			out, _ := cli(t, false, "plugin", "push", wasm, url, "--layout", layout, "--docker-config", dockerConfig, "--json")
			var pushed struct{ Digest, Layout string }
			if err := json.Unmarshal([]byte(out), &pushed); err != nil || pushed.Layout != layout || len(pushed.Digest) != 64 {
				t.Fatalf("push --json: %q (%v)", out, err)
			}
			dst := filepath.Join(t.TempDir(), "pulled.wasm")
			out, _ = cli(t, false, "plugin", "pull", url, "-o", dst, "--sha256", pushed.Digest, "--docker-config", dockerConfig, "--json")
			var pulled struct{ Digest, Layout string }
			if err := json.Unmarshal([]byte(out), &pulled); err != nil || pulled.Digest != pushed.Digest || pulled.Layout != layout {
				t.Fatalf("pull --json: %q (%v)", out, err)
			}
			got, _ := os.ReadFile(dst)
			if !bytes.Equal(got, want) {
				t.Fatal("pulled module differs from the pushed one")
			}
		})
	}
	// A wrong digest is refused with one line naming the URL and both digests.
	_, stderr := cli(t, true, "plugin", "pull", fmt.Sprintf("oci://%s/add-header:oci", reg.Host), "-o", filepath.Join(t.TempDir(), "x.wasm"),
		"--sha256", strings.Repeat("0", 64), "--docker-config", dockerConfig)
	if !strings.Contains(stderr, "manifest digest mismatch") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("stderr: %q", stderr)
	}
}

// seedWithoutPlugin is the seed config with its Wasm filter removed: the
// WasmPlugin puts it back.
func seedWithoutPlugin(t *testing.T) func(string) string {
	return func(s string) string {
		start := strings.Index(s, "                  - name: envoy.filters.http.wasm")
		end := strings.Index(s, "                  - name: envoy.filters.http.router")
		if start < 0 || end < start {
			t.Fatal("seed config layout changed")
		}
		return s[:start] + s[end:]
	}
}

const seedWasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: json-validation
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  url: oci://%s/json-validation:v3
  imagePullPolicy: IfNotPresent
  phase: AUTHN
  failStrategy: %s
  pluginConfig:
    requiredKeys: ["id", "token"]
`

func writeWasmPlugin(t *testing.T, dir, host, failStrategy string) string {
	t.Helper()
	p := filepath.Join(dir, "wasmplugin.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(seedWasmPlugin, host, failStrategy)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func postJSON(t *testing.T, url, contentType, body string) (int, string, http.Header) {
	t.Helper()
	resp, got := post(t, http.DefaultClient, url, contentType, strings.NewReader(body))
	return resp.StatusCode, got, resp.Header
}

// TestSeedWasmPluginFromRegistry: the seed's WasmPlugin for
// json-validation, its image pushed to a local TLS registry with basic
// auth, gives the seed's transcript; a restart with the registry down
// starts from the module cache.
func TestSeedWasmPluginFromRegistry(t *testing.T) {
	reg, dockerConfig := secureRegistry(t)
	cli(t, false, "plugin", "push", plugin(t, "examples/json-validation"), "oci://"+reg.Host+"/json-validation:v3", "--docker-config", dockerConfig)
	cacheDir := t.TempDir()

	dir, listen, admin := setup(t, seedConfig, "", seedWithoutPlugin(t))
	writeWasmPlugin(t, dir, reg.Host, "FAIL_CLOSE")
	args := []string{"-c", "envoy.yaml", "--wasm-plugins", "wasmplugin.yaml", "--docker-config", dockerConfig, "--module-cache-dir", cacheDir}
	in := run(t, dir, listen, admin, args...)
	for _, ex := range seedTranscript {
		code, body, _ := postJSON(t, "http://"+listen+"/", ex.contentType, ex.body)
		if code != ex.wantStatus || body != ex.wantBody {
			t.Fatalf("%s: %d %q, want %d %q", ex.name, code, body, ex.wantStatus, ex.wantBody)
		}
	}
	// /config_dump shows the plugin as istiod's ECDS would deliver it.
	_, dump := get(t, "http://"+admin+"/config_dump")
	for _, want := range []string{`"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"`, `"name": "istio-system.json-validation"`, `"uri": "oci://` + reg.Host + `/json-validation:v3"`} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s", want)
		}
	}
	in.stop()

	reg.Stop()
	in = run(t, dir, listen, admin, args...)
	if code, body, _ := postJSON(t, "http://"+listen+"/", "", ""); code != 403 || body != "content-type must be provided" {
		t.Fatalf("from cache: %d %q\n%s", code, body, in.Logs())
	}
}

// TestRegistryDownWithoutCache: no registry, nothing cached. FAIL_OPEN
// serves without the plugin (Istio issue 53279 is the counter-example);
// FAIL_CLOSE answers 503. Both log one error naming the URL.
func TestRegistryDownWithoutCache(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	reg.Stop()
	for _, tc := range []struct {
		strategy string
		want     int
	}{{"FAIL_OPEN", 200}, {"FAIL_CLOSE", 503}} {
		t.Run(tc.strategy, func(t *testing.T) {
			dir, listen, admin := setup(t, seedConfig, "", seedWithoutPlugin(t))
			writeWasmPlugin(t, dir, reg.Host, tc.strategy)
			in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--wasm-plugins", "wasmplugin.yaml", "--module-cache-dir", t.TempDir())
			code, body, _ := postJSON(t, "http://"+listen+"/", "", "")
			if code != tc.want {
				t.Fatalf("%d %q, want %d", code, body, tc.want)
			}
			if logs := in.Logs(); !strings.Contains(logs, "oci://"+reg.Host+"/json-validation:v3") || !strings.Contains(logs, "cannot connect") {
				t.Fatalf("logs lack the URL and reason:\n%s", logs)
			}
		})
	}
}

// TestTamperedImageIsRefused: a blob changed in the registry's storage
// is refused (digest check), nothing runs, and the error names the URL.
func TestTamperedImageIsRefused(t *testing.T) {
	reg, dockerConfig := secureRegistry(t)
	out, _ := cli(t, false, "plugin", "push", plugin(t, "examples/json-validation"), "oci://"+reg.Host+"/json-validation:v3",
		"--layout", "wasm", "--docker-config", dockerConfig, "--json")
	var pushed struct {
		ModuleDigest string `json:"module_digest"`
	}
	if err := json.Unmarshal([]byte(out), &pushed); err != nil {
		t.Fatal(err)
	}
	if err := reg.Tamper(pushed.ModuleDigest); err != nil {
		t.Fatal(err)
	}
	dir, listen, admin := setup(t, seedConfig, "", seedWithoutPlugin(t))
	writeWasmPlugin(t, dir, reg.Host, "FAIL_CLOSE")
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--wasm-plugins", "wasmplugin.yaml", "--docker-config", dockerConfig, "--module-cache-dir", t.TempDir())
	if code, _, _ := postJSON(t, "http://"+listen+"/", "", ""); code != 503 {
		t.Fatalf("status %d, want 503", code)
	}
	if logs := in.Logs(); !strings.Contains(logs, "does not match its digest") {
		t.Fatalf("logs:\n%s", logs)
	}
}

func adminJSON(t *testing.T, method, url string, into any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, b)
		}
	}
	return resp.StatusCode
}

type reloadStatus struct {
	Generation uint64   `json:"generation"`
	Trigger    string   `json:"trigger"`
	LastError  string   `json:"last_error"`
	Changed    []string `json:"changed"`
	Failures   uint64   `json:"failures"`
}

// TestHotReload swaps the plugin file under a running proxy: new
// requests see the new plugin, a broken version is refused and the old
// one keeps serving (log, /reload_status, stats), SIGHUP and POST
// /reload reload on demand, and an unchanged listener keeps its
// connections.
func TestHotReload(t *testing.T) {
	validation := plugin(t, "examples/json-validation")
	addHeader := plugin(t, "examples/add-header")
	dir, listen, admin := setup(t, seedConfig, validation, nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--reload-poll-interval", "100ms")
	url := "http://" + listen + "/"
	// One kept-alive connection: a filter swap keeps connections.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
	var lastReused bool
	if code, _, _ := postJSON(t, url, "", ""); code != 403 {
		t.Fatalf("v1: %d", code)
	}

	copyFile := func(src string) {
		b, _ := os.ReadFile(src)
		tmp := filepath.Join(dir, "main.wasm.tmp")
		os.WriteFile(tmp, b, 0o644)
		os.Rename(tmp, filepath.Join(dir, "main.wasm"))
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, in.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	isAddHeader := func() bool {
		req, _ := http.NewRequest("POST", url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { lastReused = info.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && resp.Header.Get("Resp-Header-Demo") == "added by our filter"
	}

	t.Run("file change", func(t *testing.T) {
		isAddHeader() // opens the connection
		copyFile(addHeader)
		waitFor("the new plugin", isAddHeader)
		if !lastReused {
			t.Error("the swap closed the client's kept-alive connection")
		}
		var st reloadStatus
		adminJSON(t, "GET", "http://"+admin+"/reload_status", &st)
		if st.Generation != 1 || st.LastError != "" || len(st.Changed) != 1 || st.Changed[0] != "main/0" {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("broken version keeps the old one", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "main.wasm"), []byte("definitely not wasm"), 0o644)
		var st reloadStatus
		waitFor("the failure report", func() bool {
			adminJSON(t, "GET", "http://"+admin+"/reload_status", &st)
			return st.Failures > 0
		})
		if !strings.Contains(st.LastError, "main.wasm") || !strings.Contains(st.LastError, "magic") {
			t.Fatalf("last_error %q", st.LastError)
		}
		if !isAddHeader() {
			t.Fatal("the running version stopped serving")
		}
		expectLogs(t, in, "reload failed; the running version keeps serving") // read from stderr on its own goroutine
		_, stats := get(t, "http://"+admin+"/stats?filter=server.reload")
		if !strings.Contains(stats, "server.reload.failure: 1") {
			t.Fatalf("stats: %s", stats)
		}
	})

	t.Run("admin", func(t *testing.T) {
		copyFile(validation)
		var st reloadStatus
		if code := adminJSON(t, "POST", "http://"+admin+"/reload", &st); code != 200 || st.LastError != "" {
			t.Fatalf("POST /reload: %d %+v", code, st)
		}
		if code, _, _ := postJSON(t, url, "", ""); code != 403 {
			t.Fatalf("after /reload: %d", code)
		}
		if code := adminJSON(t, "GET", "http://"+admin+"/reload", nil); code != 405 {
			t.Fatalf("GET /reload: %d", code)
		}
	})
}

// TestReloadOnSIGHUP: with file polling off, a changed plugin is picked
// up on SIGHUP only.
func TestReloadOnSIGHUP(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--reload-poll-interval", "0")
	b, _ := os.ReadFile(plugin(t, "examples/add-header"))
	os.WriteFile(filepath.Join(dir, "main.wasm"), b, 0o644)
	time.Sleep(300 * time.Millisecond)
	if code, _, _ := postJSON(t, "http://"+listen+"/", "", ""); code != 403 {
		t.Fatalf("reloaded without being asked: %d", code)
	}
	in.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, h := postJSON(t, "http://"+listen+"/", "", "")
		if code == 200 && h.Get("Resp-Header-Demo") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload\n%s", in.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestModuleCachePruned: modules fetched long ago and unused since are
// removed from the module cache at start-up (--module-cache-expiry, 24h
// by default as Istio's WASM_MODULE_EXPIRY); recent ones stay.
func TestModuleCachePruned(t *testing.T) {
	cache := t.TempDir()
	put := func(name, sum string, age time.Duration) string {
		dir := filepath.Join(cache, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		wasm := filepath.Join(dir, sum+".wasm")
		for _, f := range []string{wasm, filepath.Join(dir, sum+".sha256")} {
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(wasm, when, when); err != nil {
			t.Fatal(err)
		}
		return wasm
	}
	old := put("registry.example_old", "aaaa", 48*time.Hour)
	recent := put("registry.example_recent", "bbbb", time.Hour)

	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--module-cache-dir", cache)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(in.Logs(), "module cache pruned") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the module unused for 48h is still cached (%v)\n%s", err, in.Logs())
	}
	if _, err := os.Stat(strings.TrimSuffix(old, ".wasm") + ".sha256"); !os.IsNotExist(err) {
		t.Errorf("its digest file is still there (%v)", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("the module used an hour ago was removed: %v", err)
	}
	if !strings.Contains(in.Logs(), "removed=1") {
		t.Errorf("no log of the pruning:\n%s", in.Logs())
	}
}
