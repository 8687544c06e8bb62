package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuthorLoop is the plugin author's path end to end with the real
// binary: `plugin init`, the scaffold's own test, then `run --plugin
// --watch` in front of an upstream while a client keeps sending
// requests. A broken edit is reported and the running plugin keeps
// serving; a good edit is rebuilt and swapped in; no request fails, and a
// request in flight during the swap finishes on the old plugin.
func TestAuthorLoop(t *testing.T) {
	bin := wasmproxyBinary(t)
	dir := filepath.Join(t.TempDir(), "live")
	if out, err := exec.Command(bin, "plugin", "init", "example.com/live", "--dir", dir, "--wasmproxy-src", repoRoot).CombinedOutput(); err != nil {
		t.Fatalf("plugin init: %v\n%s", err, out)
	}
	goTest := exec.Command("go", "test", "-count=1", "./...")
	goTest.Dir = dir
	if out, err := goTest.CombinedOutput(); err != nil {
		t.Fatalf("go test in the scaffold: %v\n%s", err, out)
	}

	release := make(chan struct{})
	slowArrived := make(chan struct{}, 1)
	var releaseOnce sync.Once
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowArrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok\n")
	}))
	defer upstream.Close()
	// Deferred after Close, so it runs before it: Close waits for the
	// slow handler, which a failure would otherwise leave blocked until
	// the test binary's timeout.
	defer releaseOnce.Do(func() { close(release) })

	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := run(t, dir, listen, admin, "run", "--plugin", "main.wasm",
		"--plugin-config", `{"header": "x-version", "value": "v1"}`,
		"--upstream", upstream.URL, "--listen", listen, "--admin", admin, "--watch")

	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (*http.Response, error) {
		resp, err := client.Get("http://" + listen + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := get("/"); err != nil || resp.StatusCode != 200 || resp.Header.Get("x-version") != "v1" {
		t.Fatalf("first request: %v %v\n%s", resp, err, in.Logs())
	}

	// A client that never stops, until the end of the test.
	var sent, failed atomic.Int64
	var sawEdit atomic.Bool
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var stopOnce sync.Once
	// On a failure too: a client still sending would hold the
	// upstream's Close (deferred above) forever.
	defer stopOnce.Do(func() { close(stop) })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := get("/")
			sent.Add(1)
			switch {
			case err != nil:
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			case resp.StatusCode != 200:
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, resp.Status)
			case resp.Header.Get("x-edited") == "yes":
				sawEdit.Store(true)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// A request in flight across the swap.
	type result struct {
		resp *http.Response
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := get("/slow")
		slow <- result{resp, err}
	}()

	select {
	case <-slowArrived:
	case <-time.After(time.Minute):
		t.Fatalf("the slow request never reached the upstream\n%s", in.Logs())
	}

	mainGo := filepath.Join(dir, "main.go")
	orig, err := os.ReadFile(mainGo)
	if err != nil {
		t.Fatal(err)
	}
	// A broken edit: reported, and the running plugin keeps serving.
	if err := os.WriteFile(mainGo, append(append([]byte(nil), orig...), []byte("\nfunc broken() { undefinedName() }\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, in, 2*time.Minute, "plugin rebuild failed; the running plugin keeps serving")
	// The compiler's lines as it printed them (real newlines, a line of
	// its own), the log line marked as a --watch rebuild.
	if !regexp.MustCompile(`\n\S*main\.go:\d+:\d+: undefined: undefinedName`).MatchString(in.Logs()) {
		t.Errorf("the build error is not in the log on a line of its own:\n%s", in.Logs())
	}
	if !strings.Contains(in.Logs(), "undefinedName trigger=watch") {
		t.Errorf("the failed rebuild's log line has no trigger=watch:\n%s", in.Logs())
	}
	// ... and on the admin server, as a failed reload.
	var st reloadStatus
	adminJSON(t, "GET", "http://"+admin+"/reload_status", &st)
	if st.Trigger != "watch" || st.Failures != 1 || !strings.Contains(st.LastError, "undefined: undefinedName") {
		t.Errorf("/reload_status after a failed rebuild: %+v", st)
	}
	if _, body := httpGet(t, "http://"+admin+"/stats?filter=^server.reload.failure$"); !strings.Contains(body, "server.reload.failure: 1") {
		t.Errorf("/stats after a failed rebuild: %q", body)
	}

	// A good edit: a second response header.
	edited := strings.Replace(string(orig),
		"\treturn types.ActionContinue\n}\n",
		"\treturn types.ActionContinue\n}\n\nfunc init() { edited = true }\n\nvar edited bool\n", 1)
	edited = strings.Replace(edited,
		"\tif err := proxywasm.AddHttpResponseHeader(h.plugin.conf.Header, h.plugin.conf.Value); err != nil {",
		"\tif edited {\n\t\tproxywasm.AddHttpResponseHeader(\"x-edited\", \"yes\")\n\t}\n\tif err := proxywasm.AddHttpResponseHeader(h.plugin.conf.Header, h.plugin.conf.Value); err != nil {", 1)
	if edited == string(orig) || !strings.Contains(edited, "x-edited") {
		t.Fatal("the scaffold changed: update the edit in this test")
	}
	editAt := time.Now()
	if err := os.WriteFile(mainGo, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !sawEdit.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the edited plugin never served a request\n%s", in.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("edit → serving: %v (%d requests so far)", time.Since(editAt).Round(time.Millisecond), sent.Load())
	waitFor(t, in, 10*time.Second, "plugin rebuilt and swapped in trigger=watch")
	st = reloadStatus{}
	adminJSON(t, "GET", "http://"+admin+"/reload_status", &st)
	if st.Trigger != "watch" || st.Failures != 1 || st.LastError != "" || st.Generation != 1 {
		t.Errorf("/reload_status after a good rebuild: %+v", st)
	}

	// The request that started on the old plugin finishes on it.
	releaseOnce.Do(func() { close(release) })
	r := <-slow
	if r.err != nil || r.resp.StatusCode != 200 {
		t.Errorf("the in-flight request failed: %v %v", r.resp, r.err)
	} else if r.resp.Header.Get("x-version") != "v1" || r.resp.Header.Get("x-edited") != "" {
		t.Errorf("the in-flight request was not finished by the old plugin: headers %v", r.resp.Header)
	}
	stopOnce.Do(func() { close(stop) })
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the edits (first: %v)\n%s", n, sent.Load(), firstFailure.Load(), in.Logs())
	}
	waitFor(t, in, 10*time.Second, "retired plugin closed")
}

// waitFor waits until the process has logged substr.
func waitFor(t *testing.T, in *instance, d time.Duration, substr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(in.Logs(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after %v:\n%s", substr, d, in.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
