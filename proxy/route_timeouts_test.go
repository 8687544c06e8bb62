package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRouteStreamTimeouts: a route's idle_timeout replaces the connection
// manager's stream_idle_timeout (0 turns it off for the route), and its
// max_stream_duration replaces the connection manager's limit; the
// upstream holds every request until the test releases it, so only a
// timeout can answer first.
func TestRouteStreamTimeouts(t *testing.T) {
	arrived := make(chan string, 8)
	release := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		if r.URL.Path != "/grpc" {
			<-release
		}
		w.Header().Set("X-Seen-Grpc-Timeout", strings.Join(r.Header.Values("Grpc-Timeout"), ","))
		_, _ = w.Write([]byte("ok"))
	})
	var releaseOnce bool
	t.Cleanup(func() {
		if !releaseOnce {
			close(release)
		}
	})
	_, port, _ := strings.Cut(up, ":")
	yaml := strings.Replace(yamlListener, "stat_prefix: in", "stat_prefix: in\n          stream_idle_timeout: 0.3s", 1) + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /noidle}
                route: {cluster: up, timeout: 0s, idle_timeout: 0s}
              - match: {prefix: /idle}
                route: {cluster: up, timeout: 0s}
              - match: {prefix: /duration}
                route: {cluster: up, timeout: 0s, idle_timeout: 0s, max_stream_duration: {max_stream_duration: 0.2s}}
              - match: {prefix: /grpc}
                route:
                  cluster: up
                  max_stream_duration: {grpc_timeout_header_max: 2s, grpc_timeout_header_offset: 0.5s}
              - match: {prefix: /nolimit}
                route: {cluster: up, max_stream_duration: {max_stream_duration: 0s}}
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	type result struct {
		status int
		body   string
	}
	get := func(path string, hdr ...string) chan result {
		out := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("GET", "http://"+f.addr+path, nil)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- result{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out <- result{resp.StatusCode, string(b) + "|" + resp.Header.Get("X-Seen-Grpc-Timeout")}
		}()
		return out
	}
	// /noidle is at the upstream before /idle starts, so it has been idle
	// longer when /idle times out.
	noIdle := get("/noidle")
	if p := <-arrived; p != "/noidle" {
		t.Fatalf("upstream got %s first", p)
	}
	if r := <-get("/idle"); r.status != 408 || !strings.HasPrefix(r.body, "stream timeout") {
		t.Errorf("/idle: %d %q, want 408 stream timeout", r.status, r.body)
	}
	<-arrived
	if r := <-get("/duration"); r.status != 408 || !strings.HasPrefix(r.body, "downstream duration timeout") {
		t.Errorf("/duration: %d %q, want 408 downstream duration timeout", r.status, r.body)
	}
	<-arrived
	close(release)
	releaseOnce = true
	if r := <-noIdle; r.status != 200 {
		t.Errorf("/noidle (idle_timeout 0s): %d %q, want 200", r.status, r.body)
	}
	// The grpc-timeout the upstream sees: capped at 2s, less 0.5s; a
	// route turning the limit off removes it.
	for _, tc := range []struct{ path, in, want string }{
		{"/grpc", "10S", "1500m"},
		{"/grpc", "1000m", "500m"},
		{"/grpc", "bogus", ""}, // not a grpc-timeout: the HCM limit (none) applies
		{"/nolimit", "3S", ""},
	} {
		r := <-get(tc.path, "Content-Type", "application/grpc", "Grpc-Timeout", tc.in)
		<-arrived
		if r.status != 200 || r.body != "ok|"+tc.want {
			t.Errorf("%s grpc-timeout %s: %d %q, want 200 upstream grpc-timeout %q", tc.path, tc.in, r.status, r.body, tc.want)
		}
	}
}

// TestGRPCTimeoutHeader: Envoy's parsing and formatting of grpc-timeout.
func TestGRPCTimeoutHeader(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "4m": 4 * time.Millisecond,
		"1500u": 2 * time.Millisecond, "1n": time.Millisecond, "99999999m": 99999999 * time.Millisecond,
	} {
		got, ok := grpcTimeoutHeader(in)
		if !ok || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "m", "123456789m", "5x", "-1m", "+1m", "1.5S"} {
		if d, ok := grpcTimeoutHeader(in); ok {
			t.Errorf("%q: parsed as %v", in, d)
		}
	}
	for d, want := range map[time.Duration]string{
		1500 * time.Millisecond:     "1500m",
		100000 * time.Second:        "100000S",
		99999999 * time.Millisecond: "99999999m",
		200000 * time.Hour:          "12000000M",
	} {
		if got := formatGRPCTimeout(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
