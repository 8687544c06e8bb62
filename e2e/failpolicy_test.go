package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// seedFirstConfig is the seed's first envoy.yaml, repaired: no plugin
// configuration and no failure_policy, as users write it.
const seedFirstConfig = "e2e/testdata/seedfirst/envoy.yaml"

// chaosDo sends a GET with the chaos plugin's x-chaos word ("" for none)
// and returns the status.
func chaosDo(t *testing.T, url, chaos string) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chaos != "" {
		req.Header.Set("x-chaos", chaos)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Errorf("x-chaos %q: %v", chaos, err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// poisonSeed holds one request on each of the proxy's two instances
// (x-chaos: hold), then traps both with two panicking requests. It
// checks that the trapping requests and the held ones, in flight on the
// instances the traps poisoned, got FAIL_CLOSED's 503.
func poisonSeed(t *testing.T, in *instance, url string) {
	t.Helper()
	// The pool's second instance starts after /ready: wait for it, or
	// both held requests would go to the first.
	exEventually(t, 30*time.Second, "the plugin's pool started", func() (bool, string) {
		logs := in.Logs()
		return strings.Contains(logs, "plugin pool started"), tail(logs, 20)
	})
	held := make(chan int, 2)
	for i := range 2 {
		go func() { held <- chaosDo(t, url, "hold") }()
		// One at a time, so the round robin binds them to different
		// instances: wait until the plugin has the request.
		n := i + 1
		exEventually(t, 30*time.Second, "the chaos plugin holding a request", func() (bool, string) {
			logs := in.Logs()
			return strings.Count(logs, "chaos: holding request") >= n, tail(logs, 20)
		})
	}
	for i := range 2 {
		if c := chaosDo(t, url, "panic"); c != 503 {
			t.Fatalf("panicking request %d = %d, want 503", i, c)
		}
	}
	for i := range 2 {
		select {
		case c := <-held:
			if c != 503 {
				t.Errorf("request in flight on a poisoned instance = %d, want 503", c)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("held request %d never answered after its instance was poisoned\n%s", i, tail(in.Logs(), 40))
		}
	}
	if n := adminStat(t, in.admin, "wasm..runtime_errors"); n != 2 {
		t.Fatalf("wasm..runtime_errors = %d, want 2 (one trap per instance)", n)
	}
}

// TestDefaultPolicyRecovers (issue 10, item 8): with failure_policy
// unset, as in the seed's config, a plugin whose every instance was
// poisoned serves again without any reload: the requests in flight on
// the poisoned instances get FAIL_CLOSED's 503, later ones find the
// instances replaced (FAIL_RELOAD's backoff). Before, every later
// request got a 503 until the config changed.
func TestDefaultPolicyRecovers(t *testing.T) {
	dir, listen, admin := setup(t, seedFirstConfig, plugin(t, "e2e/testdata/chaos"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	url := "http://" + in.listen + "/"
	poisonSeed(t, in, url)

	for i := range 6 {
		if c := chaosDo(t, url, ""); c != 200 {
			t.Fatalf("request %d after every instance was poisoned = %d, want 200 (instances replaced)\n%s", i, c, tail(in.Logs(), 40))
		}
	}
	if n := adminStat(t, admin, "wasm..vm_reload_success"); n != 2 {
		t.Errorf("wasm..vm_reload_success = %d, want 2", n)
	}
	if n := adminStat(t, admin, "server.reload.success"); n != 0 {
		t.Errorf("server.reload.success = %d: the recovery must not need a reload", n)
	}
	expectLogs(t, in, "instance 0 reloaded", "instance 1 reloaded")
}

// TestExplicitFailClosedUntilReload (issue 10, item 8): an explicit
// FAIL_CLOSED keeps Envoy's semantics, a poisoned instance stays dead,
// until a reload, which replaces poisoned instances although the config
// did not change, and says so in its answer, the log and the stats.
func TestExplicitFailClosedUntilReload(t *testing.T) {
	dir, listen, admin := setup(t, seedFirstConfig, plugin(t, "e2e/testdata/chaos"), func(s string) string {
		const at = "                        config:\n"
		if strings.Count(s, at) != 1 {
			t.Fatalf("the seed config no longer has one %q", at)
		}
		return strings.Replace(s, at, at+"                          failure_policy: FAIL_CLOSED\n", 1)
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	url := "http://" + in.listen + "/"
	poisonSeed(t, in, url)

	for i := range 4 {
		if c := chaosDo(t, url, ""); c != 503 {
			t.Fatalf("request %d with every instance poisoned under FAIL_CLOSED = %d, want 503", i, c)
		}
	}

	code, body := postEmpty(t, "http://"+admin+"/reload")
	if code != 200 || !strings.Contains(body, `"replaced"`) || !strings.Contains(body, ": 2 replaced") {
		t.Fatalf("POST /reload = %d %s, want 200 reporting 2 instances replaced", code, body)
	}
	for i := range 4 {
		if c := chaosDo(t, url, ""); c != 200 {
			t.Fatalf("request %d after the reload = %d, want 200", i, c)
		}
	}
	if n := adminStat(t, admin, "server.reload.instances_replaced"); n != 2 {
		t.Errorf("server.reload.instances_replaced = %d, want 2", n)
	}
	if n := adminStat(t, admin, "wasm..vm_reload_success"); n != 2 {
		t.Errorf("wasm..vm_reload_success = %d, want 2", n)
	}
	expectLogs(t, in, "reload replaced poisoned plugin instances", "poisoned plugin instances replaced")
}
