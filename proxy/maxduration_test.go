package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// msdConfig is a bootstrap whose route to cluster "up" (at addr) has the
// retry policy given (none when empty); the cluster's
// common_http_protocol_options carry max_stream_duration msd, through
// the typed HttpProtocolOptions or, legacy, the deprecated Cluster field.
func msdConfig(addr, msd, policy string, legacy bool) string {
	return msdLogConfig(addr, msd, policy, legacy, "")
}

// msdLogConfig is msdConfig with an access log at logPath (none when
// empty) whose lines are "%RESPONSE_CODE% %RESPONSE_FLAGS%
// %RESPONSE_CODE_DETAILS%".
func msdLogConfig(addr, msd, policy string, legacy bool, logPath string) string {
	_, port, _ := strings.Cut(addr, ":")
	retry := ""
	if policy != "" {
		retry = "\n                  retry_policy: {" + policy + "}"
	}
	opts := `
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {max_stream_duration: ` + msd + `}
        explicit_http_config: {http_protocol_options: {}}`
	if legacy {
		opts = `
    common_http_protocol_options: {max_stream_duration: ` + msd + `}`
	}
	log := ""
	if logPath != "" {
		log = `
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + logPath + `
              log_format: {text_format_source: {inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"}}`
	}
	return yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: up` + retry + log + `
  clusters:
  - name: up` + opts + `
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}]
`
}

// silentUpstream accepts connections, reads what comes and never
// answers; it counts the connections (attempts) it saw.
func silentUpstream(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c) // until the proxy resets it
			}()
		}
	}()
	return ln.Addr().String(), &n
}

// TestClusterMaxStreamDurationNoResponse: an upstream that never
// answers is reset at the cluster's max_stream_duration; the client
// gets 504 when its request was complete (a GET, a whole POST body),
// 408 when its body was still coming, body "upstream max stream
// duration reached"; counted in upstream_rq_max_duration_reached.
func TestClusterMaxStreamDurationNoResponse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		legacy bool
		body   string // "": a GET; "hold": a body whose end never comes
		want   int
	}{
		{"GET, typed options", false, "", http.StatusGatewayTimeout},
		{"GET, deprecated cluster field", true, "", http.StatusGatewayTimeout},
		{"whole POST body", false, "payload", http.StatusGatewayTimeout},
		{"body still coming", false, "hold", http.StatusRequestTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := silentUpstream(t)
			logPath := filepath.Join(t.TempDir(), "access.log")
			f := startYAML(t, msdLogConfig(addr, "0.3s", "", tc.legacy, logPath), "")
			var req *http.Request
			switch tc.body {
			case "":
				req, _ = http.NewRequest("GET", "http://"+f.addr+"/", nil)
			case "hold":
				pr, pw := io.Pipe()
				t.Cleanup(func() { pw.Close() })
				go func() { _, _ = pw.Write([]byte("first part")) }()
				req, _ = http.NewRequest("POST", "http://"+f.addr+"/", pr)
			default:
				req, _ = http.NewRequest("POST", "http://"+f.addr+"/", strings.NewReader(tc.body))
			}
			resp, body := do(t, req)
			if resp.StatusCode != tc.want || body != "upstream max stream duration reached" {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.want, "upstream max stream duration reached")
			}
			if got := f.counter("cluster.up.upstream_rq_max_duration_reached"); got != 1 {
				t.Errorf("upstream_rq_max_duration_reached = %d, want 1", got)
			}
			if got := f.counter("cluster.up.upstream_rq_timeout"); got != 0 {
				t.Errorf("upstream_rq_timeout = %d, want 0", got)
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("%d upstream attempts, want 1", got)
			}
			wantLog := fmt.Sprintf("%d UMSDR upstream_max_stream_duration_reached\n", tc.want)
			if lines := msdLogLines(t, f, logPath); len(lines) != 1 || lines[0] != wantLog {
				t.Errorf("access log %q, want %q", lines, wantLog)
			}
		})
	}
}

// msdLogLines is the access log once the one request's stream ended.
func msdLogLines(t *testing.T, f *fixture, logPath string) []string {
	t.Helper()
	f.waitCounter(t, "http.in.downstream_rq_completed", 1)
	f.srv.FlushAccessLogs()
	return readLines(t, logPath)
}

// stallingUpstream answers every request with headers and part of a
// body it never finishes.
func stallingUpstream(t *testing.T) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		fmt.Fprint(w, "partial")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

// TestClusterMaxStreamDurationResetsStartedResponse: the bound covers
// the whole upstream stream: a response whose body stalls is cut at
// max_stream_duration, and as it had started downstream the downstream
// stream is reset (the client's body read fails), not retried.
func TestClusterMaxStreamDurationResetsStartedResponse(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"synchronous exchange", ""},
		{"streamed request", "hold-then-end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "access.log")
			f := startYAML(t, msdLogConfig(stallingUpstream(t), "0.3s", "retry_on: reset, num_retries: 2", false, logPath), "")
			var req *http.Request
			if tc.body == "" {
				req, _ = http.NewRequest("GET", "http://"+f.addr+"/", nil)
			} else {
				pr, pw := io.Pipe()
				go func() {
					_, _ = pw.Write([]byte("a"))
					_, _ = pw.Write([]byte("b"))
					pw.Close()
				}()
				req, _ = http.NewRequest("POST", "http://"+f.addr+"/", pr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want the upstream's 200", resp.StatusCode)
			}
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("body %q read in full; want the stream reset", b)
			}
			if string(b) != "partial" {
				t.Errorf("body before the reset %q, want %q", b, "partial")
			}
			if got := f.counter("cluster.up.upstream_rq_max_duration_reached"); got != 1 {
				t.Errorf("upstream_rq_max_duration_reached = %d, want 1", got)
			}
			if got := f.counter("cluster.up.upstream_rq_retry"); got != 0 {
				t.Errorf("upstream_rq_retry = %d, want 0 (the response had started)", got)
			}
			want := "200 UMSDR upstream_max_stream_duration_reached\n"
			if lines := msdLogLines(t, f, logPath); len(lines) != 1 || lines[0] != want {
				t.Errorf("access log %q, want %q", lines, want)
			}
		})
	}
}

// TestClusterMaxStreamDurationRetried: with retry_on reset, an attempt
// cut by max_stream_duration before its response is retried, and the
// retry's answer reaches the client; not counted as a per-try timeout.
// Without retries left the client gets 504.
func TestClusterMaxStreamDurationRetried(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  string
		method  string
		want    int
		retries uint64
	}{
		{"GET retried", "retry_on: reset, num_retries: 1, retry_back_off: {base_interval: 0.001s}", "GET", 200, 1},
		{"streamed POST retried", "retry_on: gateway-error, num_retries: 1, retry_back_off: {base_interval: 0.001s}", "POST", 200, 1},
		{"connect-failure does not retry it", "retry_on: connect-failure, num_retries: 1", "GET", http.StatusGatewayTimeout, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			var bodies atomic.Value
			up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if n.Add(1) == 1 {
					<-r.Context().Done() // the first attempt hangs
					return
				}
				bodies.Store(string(b))
				fmt.Fprint(w, "second")
			})
			// 1s: the retry's quick answer fits in it on a loaded machine.
			f := startYAML(t, msdConfig(up, "1s", tc.policy, false), "")
			var req *http.Request
			if tc.method == "GET" {
				req, _ = http.NewRequest("GET", "http://"+f.addr+"/", nil)
			} else {
				pr, pw := io.Pipe()
				go func() {
					_, _ = pw.Write([]byte("one,"))
					_, _ = pw.Write([]byte("two"))
					pw.Close()
				}()
				req, _ = http.NewRequest("POST", "http://"+f.addr+"/", pr)
			}
			resp, body := do(t, req)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %q, want %d (attempts %d, retries %d, msd %d)", resp.StatusCode, body, tc.want, n.Load(), f.counter("cluster.up.upstream_rq_retry"), f.counter("cluster.up.upstream_rq_max_duration_reached"))
			}
			if tc.want == 200 && body != "second" {
				t.Errorf("body %q, want the retry's", body)
			}
			if tc.method == "POST" {
				if b, _ := bodies.Load().(string); b != "one,two" {
					t.Errorf("retried body %q, want %q", b, "one,two")
				}
			}
			for name, want := range map[string]uint64{
				"upstream_rq_max_duration_reached": 1,
				"upstream_rq_retry":                tc.retries,
				"upstream_rq_per_try_timeout":      0,
			} {
				if got := f.counter("cluster.up." + name); got != want {
					t.Errorf("cluster.up.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestClusterMaxStreamDurationNotReached: a streamed attempt that ends
// in time is unaffected, and its timer does not fire afterwards on the
// kept-alive connection's next request.
func TestClusterMaxStreamDurationNotReached(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := startYAML(t, msdConfig(up, "1s", "", false), "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if i == 1 {
			// A second request after the first attempt's bound passed:
			// a stale timer must not touch it.
			time.Sleep(1200 * time.Millisecond)
		}
		if i == 0 {
			// A chunked body: a streamed exchange, whose attempt has a timer.
			fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n")
		} else {
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, b)
		}
	}
	if got := f.counter("cluster.up.upstream_rq_max_duration_reached"); got != 0 {
		t.Errorf("upstream_rq_max_duration_reached = %d, want 0", got)
	}
}

// TestClusterMaxStreamDurationHTTP2: to an HTTP/2 cluster (where the
// attempt's bound is a context deadline or the streamed timer, not the
// HTTP/1.1 pool's connection deadline) an attempt that gets no answer
// is reset at max_stream_duration: 504, or retried under retry_on reset.
func TestClusterMaxStreamDurationHTTP2(t *testing.T) {
	for _, tc := range []struct {
		name, policy, method string
		want                 int
	}{
		{"GET, no retry", "", "GET", http.StatusGatewayTimeout},
		{"GET retried", "retry_on: reset, num_retries: 1, retry_back_off: {base_interval: 0.001s}", "GET", 200},
		{"streamed POST retried", "retry_on: reset, num_retries: 1, retry_back_off: {base_interval: 0.001s}", "POST", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			up := upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				if n.Add(1) == 1 {
					<-r.Context().Done() // the first attempt hangs
					return
				}
				fmt.Fprintf(w, "answered over HTTP/%d", r.ProtoMajor)
			}), &http2.Server{}).ServeHTTP)
			yaml := strings.Replace(msdConfig(up, "1s", tc.policy, false), "explicit_http_config: {http_protocol_options: {}}", "explicit_http_config: {http2_protocol_options: {}}", 1)
			f := startYAML(t, yaml, "")
			var req *http.Request
			if tc.method == "GET" {
				req, _ = http.NewRequest("GET", "http://"+f.addr+"/", nil)
			} else {
				pr, pw := io.Pipe()
				go func() {
					_, _ = pw.Write([]byte("one,"))
					_, _ = pw.Write([]byte("two"))
					pw.Close()
				}()
				req, _ = http.NewRequest("POST", "http://"+f.addr+"/", pr)
			}
			resp, body := do(t, req)
			want := "upstream max stream duration reached"
			if tc.want == 200 {
				want = "answered over HTTP/2"
			}
			if resp.StatusCode != tc.want || body != want {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.want, want)
			}
			if got := f.counter("cluster.up.upstream_rq_max_duration_reached"); got != 1 {
				t.Errorf("upstream_rq_max_duration_reached = %d, want 1", got)
			}
		})
	}
}
