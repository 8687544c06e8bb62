package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// h1CloseFixture starts a proxy from YAML whose connection manager
// carries hcm (extra lines at the connection manager's indentation) and
// routes everything to a real upstream.
func h1CloseFixture(t *testing.T, hcm string) *fixture {
	t.Helper()
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	_, port, _ := net.SplitHostPort(up)
	cfg := strings.Replace(yamlListener, "stat_prefix: in\n", "stat_prefix: in\n"+hcm, 1) + `
            virtual_hosts: [{name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]
` + yamlClusters
	return startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(cfg), up)
}

// connExchange writes one raw request and reads its response.
func connExchange(t *testing.T, c net.Conn, br *bufio.Reader, req string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestBadRequestClosesConnection: over HTTP/1.1 a 400 the proxy answers
// itself ends the connection ("connection: close", then the close)
// unless stream_error_on_invalid_http_message is true, the
// http_protocol_options override winning over the connection manager's
// field; a header name with an underscore under REJECT_REQUEST is a
// codec error and closes the connection whatever the option says
// (counted in downstream_cx_protocol_error), as Envoy's handleCodecError.
func TestBadRequestClosesConnection(t *testing.T) {
	const escaped = "GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"
	const underscore = "GET / HTTP/1.1\r\nHost: x\r\nx_custom: v\r\n\r\n"
	for _, tc := range []struct {
		name, hcm, req string
		wantOpen       bool
		protocolErrors uint64
	}{
		{"default", "", escaped, false, 0},
		{"stream error", "          stream_error_on_invalid_http_message: true\n", escaped, true, 0},
		{"override false wins", "          stream_error_on_invalid_http_message: true\n          http_protocol_options: {override_stream_error_on_invalid_http_message: false}\n", escaped, false, 0},
		{"override true wins", "          http_protocol_options: {override_stream_error_on_invalid_http_message: true}\n", escaped, true, 0},
		{"underscore", "          common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}\n", underscore, false, 1},
		{"underscore with stream error", "          stream_error_on_invalid_http_message: true\n          common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}\n", underscore, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := h1CloseFixture(t, "          path_with_escaped_slashes_action: REJECT_REQUEST\n"+tc.hcm)
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			resp := connExchange(t, c, br, tc.req)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if resp.Close == tc.wantOpen {
				t.Errorf("connection: close on the 400 = %v, want %v", resp.Close, !tc.wantOpen)
			}
			if tc.wantOpen {
				// The connection serves the next request.
				if resp := connExchange(t, c, br, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
					t.Errorf("next request on the connection: status %d", resp.StatusCode)
				}
			} else {
				expectClosed(t, c, br)
			}
			if got := f.counter("http.in.downstream_cx_protocol_error"); got != tc.protocolErrors {
				t.Errorf("downstream_cx_protocol_error = %d, want %d", got, tc.protocolErrors)
			}
		})
	}
}

// TestDrainTimeoutAfterIdle: an HTTP/1.1 connection whose idle_timeout
// ran out after a request drains for drain_timeout, as Envoy's drain
// sequence: it stays open, and a request in that time is served with
// "connection: close", after which the connection ends. With
// drain_timeout 0 it closes at the idle timeout.
func TestDrainTimeoutAfterIdle(t *testing.T) {
	t.Run("draining", func(t *testing.T) {
		f := h1CloseFixture(t, "          common_http_protocol_options: {idle_timeout: 0.1s}\n          drain_timeout: 3600s\n")
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if resp := connExchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("first request: status %d, close %v", resp.StatusCode, resp.Close)
		}
		f.waitCounter(t, "http.in.downstream_cx_idle_timeout", 1)
		resp := connExchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || !resp.Close {
			t.Errorf("request while draining: status %d, connection: close %v; want 200 with close", resp.StatusCode, resp.Close)
		}
		expectClosed(t, c, br)
	})
	t.Run("no drain", func(t *testing.T) {
		f := h1CloseFixture(t, "          common_http_protocol_options: {idle_timeout: 0.1s}\n          drain_timeout: 0s\n")
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		connExchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		expectClosed(t, c, br)
	})
}

// TestDelayedCloseTimeout: a connection the proxy closes after its
// answer (here a 400) is half-closed and waits for the client to close
// before it ends, bounded by delayed_close_timeout; with 0 it ends at
// once.
func TestDelayedCloseTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, timeout string
		waits         bool
	}{
		{"waits for the client", "3600s", true},
		{"disabled", "0s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := h1CloseFixture(t, "          path_with_escaped_slashes_action: REJECT_REQUEST\n          delayed_close_timeout: "+tc.timeout+"\n")
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			if resp := connExchange(t, c, br, "GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 400 || !resp.Close {
				t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
			}
			expectClosed(t, c, br) // the proxy's write side is closed
			active := f.st.Gauge("http.in.downstream_cx_active")
			if tc.waits {
				// The client has not closed and the timeout is an hour
				// away: the proxy still holds the connection.
				if got := active.Value(); got != 1 {
					t.Fatalf("downstream_cx_active = %d before the client closed, want 1", got)
				}
				c.Close()
			}
			deadline := time.Now().Add(20 * time.Second)
			for active.Value() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("downstream_cx_active = %d, the connection did not end", active.Value())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
