package e2e

// End-to-end tests of the examples for common needs (examples/ext-authz,
// rate-limit, metrics, header-routing): each plugin built from source,
// run by the real binary with the example's own envoy.yaml, in front of
// real upstreams and auth services, with real HTTP clients.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// exampleSetup lays out examples/<name>/envoy.yaml and the plugin built
// from examples/<name> in a work dir, as setup does. repl are old, new
// pairs applied first, in order (an example's extra ports, or a cluster
// moved to a test server); then the seed ports 18000, 8099 and 8001 are
// replaced by free ones.
func exampleSetup(t *testing.T, name string, repl ...string) (dir, listen, admin string) {
	t.Helper()
	wasm := plugin(t, "examples/"+name)
	cfg, err := os.ReadFile(filepath.Join(repoRoot, "examples", name, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("examples/%s/envoy.yaml has no %q to replace", name, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	lp, up, ap := freePort(t), freePort(t), freePort(t)
	s = strings.ReplaceAll(s, "port_value: 18000", fmt.Sprintf("port_value: %d", lp))
	s = strings.ReplaceAll(s, "port_value: 8099", fmt.Sprintf("port_value: %d", up))
	s = strings.ReplaceAll(s, "port_value: 8001", fmt.Sprintf("port_value: %d", ap))
	s = strings.ReplaceAll(s, "address: 0.0.0.0", "address: 127.0.0.1")
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
}

// examplePort is a free port as config text.
func examplePort(t *testing.T) string { return strconv.Itoa(freePort(t)) }

// serverPort is the port of an httptest server.
func serverPort(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// exResponse is what a client got.
type exResponse struct {
	status int
	header http.Header
	body   string
}

// exDo sends one request with header key, value pairs and reads the whole
// answer.
func exDo(t *testing.T, method, url, body string, kv ...string) exResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return exResponse{resp.StatusCode, resp.Header, string(b)}
}

// expect fails the test unless the response has status and body.
func (r exResponse) expect(t *testing.T, what string, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("%s: got %d %q, want %d %q", what, r.status, r.body, status, body)
	}
}

// exStats reads the admin's /stats as name → value for counters and
// gauges (histogram lines are kept as text).
func exStats(t *testing.T, admin string) (map[string]string, string) {
	t.Helper()
	code, text := get(t, "http://"+admin+"/stats")
	if code != 200 {
		t.Fatalf("/stats: %d %s", code, text)
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			out[k] = v
		}
	}
	return out, text
}

// exStat reads one counter or gauge; -1 when /stats does not list it.
func exStat(t *testing.T, admin, name string) int64 {
	t.Helper()
	m, _ := exStats(t, admin)
	v, ok := m[name]
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("/stats %s: %q is not a number", name, v)
	}
	return n
}

// exEventually polls cond every 10ms until it holds or d passes.
func exEventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v; last state:\n%s", what, d, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExampleExtAuthz runs examples/ext-authz as shipped: the toy auth
// service of its envoy.yaml (routes on the bearer token) decides.
func TestExampleExtAuthz(t *testing.T) {
	dir, listen, admin := exampleSetup(t, "ext-authz", "port_value: 8098", "port_value: "+examplePort(t))
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	u := "http://" + in.listen + "/"

	exDo(t, "GET", u, "", "Authorization", "Bearer alice-token").expect(t, "alice", 200, "hello from the server\n")
	exDo(t, "GET", u, "", "Authorization", "Bearer bob-token", "X-Auth-User", "admin").expect(t, "bob", 200, "hello from the server\n")
	exDo(t, "GET", u, "", "Authorization", "Bearer mallory").expect(t, "unknown token", 403, "unknown or missing token\n")
	exDo(t, "GET", u, "", "X-Auth-User", "alice").expect(t, "no token, forged user", 403, "unknown or missing token\n")
	exDo(t, "POST", u, "some data", "Authorization", "Bearer alice-token").expect(t, "POST with a body", 200, "hello from the server\n")
}

// authService is a real auth service on 127.0.0.1: tokens map to users;
// "Bearer broken" answers 500, "Bearer slow" answers after 2s.
type authService struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func startAuthService(t *testing.T) *authService {
	a := &authService{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r)
		a.mu.Unlock()
		switch auth := r.Header.Get("Authorization"); auth {
		case "Bearer alice-token":
			w.Header().Set("X-Auth-User", "alice")
			w.WriteHeader(200)
		case "Bearer carol-token":
			io.WriteString(w, "carol\n") // the user in the body
		case "Bearer broken":
			http.Error(w, "panic: database on fire", 500)
		case "Bearer slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			w.Header().Set("X-Auth-User", "slowpoke")
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="e2e"`)
			w.Header().Set("X-Auth-Debug", "internal detail")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(401)
			fmt.Fprintf(w, "denied: %q\n", auth)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authService) requests() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.seen...)
}

// TestExampleExtAuthzRealServices points the example's clusters at a real
// auth service and an upstream that echoes what it received.
func TestExampleExtAuthzRealServices(t *testing.T) {
	auth := startAuthService(t)
	var upstreamHits sync.Map // path → x-auth-user values
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		users := r.Header.Values("X-Auth-User")
		upstreamHits.Store(r.URL.Path, users)
		fmt.Fprintf(w, "user=%s body=%q\n", strings.Join(users, ","), body)
	}))
	t.Cleanup(upstream.Close)

	dir, listen, admin := exampleSetup(t, "ext-authz",
		// The clusters go to the test's servers; the demo's listeners
		// move out of the way.
		"{ address: 127.0.0.1, port_value: 8099 }", "{ address: 127.0.0.1, port_value: "+serverPort(t, upstream)+" }",
		"{ address: 127.0.0.1, port_value: 8098 }", "{ address: 127.0.0.1, port_value: "+serverPort(t, auth.Server)+" }",
		"port_value: 8098", "port_value: "+examplePort(t))
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	base := "http://" + in.listen

	t.Run("allowed, the user from the reply header", func(t *testing.T) {
		r := exDo(t, "GET", base+"/orders", "", "Authorization", "Bearer alice-token")
		r.expect(t, "alice", 200, "user=alice body=\"\"\n")
		seen := auth.requests()
		last := seen[len(seen)-1]
		if last.Method != "GET" || last.URL.Path != "/check" || last.Header.Get("Authorization") != "Bearer alice-token" {
			t.Errorf("the auth service got %s %s authorization %q", last.Method, last.URL.Path, last.Header.Get("Authorization"))
		}
	})
	t.Run("allowed, the user from the reply body, with a request body", func(t *testing.T) {
		exDo(t, "PUT", base+"/carol", `{"n": 1}`, "Authorization", "Bearer carol-token").
			expect(t, "carol", 200, "user=carol body=\"{\\\"n\\\": 1}\"\n")
	})
	t.Run("a client-sent x-auth-user is never trusted", func(t *testing.T) {
		r := exDo(t, "GET", base+"/forged", "", "Authorization", "Bearer alice-token", "X-Auth-User", "root", "X-Auth-User", "admin")
		r.expect(t, "alice with forged users", 200, "user=alice body=\"\"\n")
		for _, req := range auth.requests() {
			if v := req.Header.Values("X-Auth-User"); len(v) != 0 {
				t.Errorf("the auth service received x-auth-user %q", v)
			}
		}
		r = exDo(t, "GET", base+"/forged-denied", "", "X-Auth-User", "alice")
		r.expect(t, "forged user without a token", 403, "denied: \"\"\n")
		if _, hit := upstreamHits.Load("/forged-denied"); hit {
			t.Errorf("a request without a token reached the upstream")
		}
	})
	t.Run("denied: 403 with the auth service's body", func(t *testing.T) {
		r := exDo(t, "GET", base+"/denied", "", "Authorization", "Bearer mallory")
		r.expect(t, "mallory", 403, "denied: \"Bearer mallory\"\n")
		if got := r.header.Get("Www-Authenticate"); got != `Bearer realm="e2e"` {
			t.Errorf("www-authenticate = %q", got)
		}
		if got := r.header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
			t.Errorf("content-type = %q", got)
		}
		if got := r.header.Get("X-Auth-Debug"); got != "" {
			t.Errorf("an internal auth header reached the client: %q", got)
		}
		if _, hit := upstreamHits.Load("/denied"); hit {
			t.Errorf("a denied request reached the upstream")
		}
	})
	t.Run("auth service error: 503", func(t *testing.T) {
		exDo(t, "GET", base+"/broken", "", "Authorization", "Bearer broken").expect(t, "500 from auth", 503, "auth service unavailable\n")
	})
	t.Run("auth service too slow: 503 after timeout_ms", func(t *testing.T) {
		start := time.Now()
		exDo(t, "GET", base+"/slow", "", "Authorization", "Bearer slow").expect(t, "slow auth", 503, "auth service unavailable\n")
		// Not before timeout_ms; the 503 and the upstream never reached
		// (below) say it was not the auth answer, sent at 2 s, either.
		// An upper bound would only measure how busy the machine is.
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("answered after %v, before timeout_ms (1s)", d)
		}
		if _, hit := upstreamHits.Load("/slow"); hit {
			t.Errorf("the request reached the upstream after the auth timeout")
		}
		// The proxy answers a call past its timeout with a local 504.
		exEventually(t, 5*time.Second, "a warning about the auth timeout", func() (bool, string) {
			return strings.Contains(in.Logs(), "the auth service failed with status 504"), in.Logs()
		})
	})
}

// TestExampleExtAuthzServiceDown: nothing listens on the auth cluster's
// port, so every request gets 503 and none reaches the upstream.
func TestExampleExtAuthzServiceDown(t *testing.T) {
	dir, listen, admin := exampleSetup(t, "ext-authz",
		"{ address: 127.0.0.1, port_value: 8098 }", "{ address: 127.0.0.1, port_value: "+examplePort(t)+" }",
		"port_value: 8098", "port_value: "+examplePort(t))
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	for _, token := range []string{"Bearer alice-token", ""} {
		r := exDo(t, "GET", "http://"+in.listen+"/", "", "Authorization", token)
		r.expect(t, "auth down, token "+token, 503, "auth service unavailable\n")
		if got := r.header.Get("Content-Type"); got != "text/plain" {
			t.Errorf("content-type = %q", got)
		}
	}
	if n := exStat(t, in.admin, "cluster.web_service.upstream_rq_total"); n != 0 {
		t.Errorf("cluster.web_service.upstream_rq_total = %d (-1: not listed), want 0: no request may reach the upstream", n)
	}
	// As Envoy's async client, the proxy answers a call whose connection
	// fails with a local 503; the plugin's 5xx rule turns it into its 503.
	exEventually(t, 5*time.Second, "a warning about the auth service", func() (bool, string) {
		return strings.Contains(in.Logs(), "the auth service failed with status 503"), in.Logs()
	})
}

// TestExampleRateLimit runs examples/rate-limit with two instances: 3
// requests per key, then 429 until a refill adds one token a second.
func TestExampleRateLimit(t *testing.T) {
	dir, listen, admin := exampleSetup(t, "rate-limit")
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	u := "http://" + in.listen + "/"
	// The proxy is ready on the pool's first instance; the second starts
	// after it (docs/decisions.md §59).
	exEventually(t, 30*time.Second, "the plugin started once per instance", func() (bool, string) {
		return strings.Contains(in.Logs(), "plugin pool started"), in.Logs()
	})
	if n := strings.Count(in.Logs(), "3 requests per key, 1 more every 1000ms"); n != 2 {
		t.Fatalf("the plugin started %d times, want 2 (one per instance):\n%s", n, in.Logs())
	}

	// waitRefill returns just after the next refill, so the requests that
	// follow have most of a second before the one after.
	waitRefill := func(t *testing.T) {
		t.Helper()
		before := exStat(t, in.admin, "rate_limit.refills")
		exEventually(t, 5*time.Second, "a refill", func() (bool, string) {
			n := exStat(t, in.admin, "rate_limit.refills")
			return n > before, fmt.Sprintf("rate_limit.refills %d", n)
		})
	}
	allowed, limited := 0, 0
	expect := func(t *testing.T, r exResponse, status int, remaining string) {
		t.Helper()
		switch status {
		case 200:
			r.expect(t, "allowed", 200, "hello from the server\n")
			allowed++
		case 429:
			r.expect(t, "limited", 429, "rate limit exceeded\n")
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Errorf("retry-after = %q, want 1", got)
			}
			limited++
		}
		if got := r.header.Get("X-Ratelimit-Remaining"); got != remaining {
			t.Errorf("x-ratelimit-remaining = %q, want %s", got, remaining)
		}
		if got := r.header.Get("X-Ratelimit-Limit"); got != "3" {
			t.Errorf("x-ratelimit-limit = %q, want 3", got)
		}
	}

	t.Run("3 pass, the 4th gets 429, a refill lets one more through", func(t *testing.T) {
		waitRefill(t)
		// Successive requests go round robin over the two instances, so
		// they only add up to 3 if the instances share the bucket.
		for _, remaining := range []string{"2", "1", "0"} {
			expect(t, exDo(t, "GET", u, "", "X-Api-Key", "alice"), 200, remaining)
		}
		expect(t, exDo(t, "GET", u, "", "X-Api-Key", "alice"), 429, "0")
		expect(t, exDo(t, "GET", u, "", "X-Api-Key", "bob"), 200, "2") // another key
		waitRefill(t)
		// Both instances tick; only one refills, so exactly one token.
		expect(t, exDo(t, "GET", u, "", "X-Api-Key", "alice"), 200, "0")
		expect(t, exDo(t, "GET", u, "", "X-Api-Key", "alice"), 429, "0")
	})

	t.Run("concurrent requests share one bucket across instances", func(t *testing.T) {
		waitRefill(t)
		const n = 12
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(u + "?i=" + strconv.Itoa(i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		ok, tooMany := 0, 0
		for _, s := range statuses {
			switch s {
			case 200:
				ok++
			case 429:
				tooMany++
			}
		}
		// No key header: the key is the client address, shared by all.
		if ok != 3 || tooMany != n-3 {
			t.Fatalf("%d concurrent requests: %d passed, %d got 429 (statuses %v); want 3 and %d", n, ok, tooMany, statuses, n-3)
		}
		allowed += ok
		limited += tooMany
	})

	t.Run("stats count every decision", func(t *testing.T) {
		stats, text := exStats(t, in.admin)
		if stats["rate_limit.allowed"] != strconv.Itoa(allowed) || stats["rate_limit.limited"] != strconv.Itoa(limited) {
			t.Errorf("rate_limit.allowed %s, rate_limit.limited %s; want %d, %d\n%s",
				stats["rate_limit.allowed"], stats["rate_limit.limited"], allowed, limited, text)
		}
	})
}

// TestExampleMetrics runs examples/metrics with two instances in front of
// a real upstream whose bodies the test sizes, and reads the metrics on
// /stats and /stats/prometheus.
func TestExampleMetrics(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			<-release
			io.WriteString(w, "slow\n")
			return
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/bytes/"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if r.Method != "HEAD" {
			io.WriteString(w, strings.Repeat("x", n))
		}
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	dir, listen, admin := exampleSetup(t, "metrics",
		"{ address: 127.0.0.1, port_value: 8099 }", "{ address: 127.0.0.1, port_value: "+serverPort(t, upstream)+" }")
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")
	base := "http://" + in.listen

	for _, r := range []struct {
		method, path, body string
		status, size       int
	}{
		{"GET", "/bytes/3", "", 200, 3},
		{"GET", "/bytes/40", "", 200, 40},
		{"GET", "/bytes/700", "", 200, 700},
		{"POST", "/bytes/12", "payload", 200, 12},
		{"PUT", "/bytes/0", "x", 200, 0},
		{"HEAD", "/bytes/100", "", 200, 0},
		{"PURGE", "/bytes/2", "", 200, 2},
	} {
		resp := exDo(t, r.method, base+r.path, r.body)
		if resp.status != r.status || len(resp.body) != r.size {
			t.Fatalf("%s %s: %d with %d bytes, want %d with %d", r.method, r.path, resp.status, len(resp.body), r.status, r.size)
		}
	}

	// Two requests held by the upstream are in flight.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(base + "/slow")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	exEventually(t, 10*time.Second, "2 requests in flight", func() (bool, string) {
		n := exStat(t, in.admin, "httpmetrics.requests_in_flight")
		return n == 2, fmt.Sprintf("httpmetrics.requests_in_flight %d", n)
	})
	_, prom := get(t, "http://"+in.admin+"/stats/prometheus")
	if !strings.Contains(prom, "# TYPE httpmetrics_requests_in_flight gauge\nhttpmetrics_requests_in_flight{} 2\n") {
		t.Errorf("/stats/prometheus does not show 2 in flight:\n%s", grepProm(prom, "httpmetrics_requests_in_flight"))
	}
	close(release)
	wg.Wait()
	// The samples are recorded when each stream ends, after the response.
	var text string
	exEventually(t, 10*time.Second, "every stream ended", func() (bool, string) {
		var stats map[string]string
		stats, text = exStats(t, in.admin)
		return stats["httpmetrics.requests_in_flight"] == "0" &&
			strings.Contains(text, "httpmetrics.request_duration_ms: P0(") &&
			strings.Contains(prom2(t, in.admin), "httpmetrics_response_body_bytes_count{} 9\n"), text
	})

	for _, want := range []string{
		"httpmetrics.requests.GET.total: 5\n",
		"httpmetrics.requests.POST.total: 1\n",
		"httpmetrics.requests.PUT.total: 1\n",
		"httpmetrics.requests.HEAD.total: 1\n",
		"httpmetrics.requests.OTHER.total: 1\n",
		"httpmetrics.requests.DELETE.total: 0\n",
		"httpmetrics.requests_in_flight: 0\n",
		"httpmetrics.response_body_bytes: P0(",
		"httpmetrics.request_duration_ms: P0(",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q", want)
		}
	}

	// Bodies 3, 40, 700, 12, 0, 0 (HEAD), 2, 5, 5 (the slow ones): 767
	// bytes in 9 samples, in Envoy's default buckets.
	prom = prom2(t, in.admin)
	wantProm := `# TYPE httpmetrics_requests_total counter
httpmetrics_requests_total{method="CONNECT"} 0
httpmetrics_requests_total{method="DELETE"} 0
httpmetrics_requests_total{method="GET"} 5
httpmetrics_requests_total{method="HEAD"} 1
httpmetrics_requests_total{method="OPTIONS"} 0
httpmetrics_requests_total{method="OTHER"} 1
httpmetrics_requests_total{method="PATCH"} 0
httpmetrics_requests_total{method="POST"} 1
httpmetrics_requests_total{method="PUT"} 1
httpmetrics_requests_total{method="TRACE"} 0
`
	if !strings.Contains(prom, wantProm) {
		t.Errorf("/stats/prometheus lacks\n%s\nhas\n%s", wantProm, grepProm(prom, "httpmetrics_requests_total"))
	}
	for _, want := range []string{
		"# TYPE httpmetrics_requests_in_flight gauge\nhttpmetrics_requests_in_flight{} 0\n",
		"# TYPE httpmetrics_response_body_bytes histogram\n" +
			`httpmetrics_response_body_bytes_bucket{le="0.5"} 2` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="1"} 2` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="5"} 6` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="10"} 6` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="25"} 7` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="50"} 8` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="100"} 8` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="250"} 8` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="500"} 8` + "\n" +
			`httpmetrics_response_body_bytes_bucket{le="1000"} 9` + "\n",
		`httpmetrics_response_body_bytes_bucket{le="+Inf"} 9` + "\n" +
			"httpmetrics_response_body_bytes_sum{} 767\n" +
			"httpmetrics_response_body_bytes_count{} 9\n",
		"# TYPE httpmetrics_request_duration_ms histogram\n",
		`httpmetrics_request_duration_ms_bucket{le="+Inf"} 9` + "\n",
		"httpmetrics_request_duration_ms_count{} 9\n",
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks\n%s", want)
		}
	}
	for _, bad := range []string{"envoy_httpmetrics", "wasmcustom", "httpmetrics_requests_GET_total"} {
		if strings.Contains(prom, bad) {
			t.Errorf("/stats/prometheus has %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("/stats/prometheus (httpmetrics):\n%s", grepProm(prom, "httpmetrics"))
	}
}

func prom2(t *testing.T, admin string) string {
	t.Helper()
	code, text := get(t, "http://"+admin+"/stats/prometheus")
	if code != 200 {
		t.Fatalf("/stats/prometheus: %d", code)
	}
	return text
}

// grepProm keeps the lines of text that contain s.
func grepProm(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestExampleHeaderRouting runs examples/header-routing: x-version picks
// the upstream through x-route-to and clear_route_cache.
func TestExampleHeaderRouting(t *testing.T) {
	dir, listen, admin := exampleSetup(t, "header-routing", "port_value: 8097", "port_value: "+examplePort(t))
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	u := "http://" + in.listen + "/"
	for _, c := range []struct {
		name    string
		headers []string
		want    string
	}{
		{"x-version v2", []string{"X-Version", "v2"}, "v2"},
		{"x-version v1", []string{"X-Version", "v1"}, "v1"},
		{"no header: the default", nil, "v1"},
		{"unknown version: the default", []string{"X-Version", "v3"}, "v1"},
		{"case-insensitive", []string{"X-Version", "V2"}, "v2"},
		{"a client's x-route-to is overwritten", []string{"X-Route-To", "v2"}, "v1"},
		{"x-version wins over x-route-to", []string{"X-Route-To", "v1", "X-Version", "v2"}, "v2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := exDo(t, "GET", u, "", c.headers...)
			r.expect(t, c.name, 200, "hello from "+c.want+"\n")
			if got := r.header.Get("X-Route-Name"); got != c.want {
				t.Errorf("x-route-name = %q, want %s", got, c.want)
			}
		})
	}
	// The routes sent each request to its cluster.
	stats, text := exStats(t, in.admin)
	if stats["cluster.service_v2.upstream_rq_total"] != "3" || stats["cluster.service_v1.upstream_rq_total"] != "4" {
		t.Errorf("upstream_rq_total v1 %s v2 %s, want 4 and 3\n%s", stats["cluster.service_v1.upstream_rq_total"],
			stats["cluster.service_v2.upstream_rq_total"], grepProm(text, "upstream_rq_total"))
	}
	if regexp.MustCompile(`(?m)wasm log header_routing.*(clear_route_cache|warn|error)`).MatchString(in.Logs()) {
		t.Errorf("the plugin complained:\n%s", in.Logs())
	}
}
