package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// localReplyYAML is a listener whose replies are all the proxy's own: a
// direct response, an upstream nothing listens on (503), a request no
// route takes (404), under a local_reply_config with mappers of each
// kind and a fallback body_format.
const localReplyYAML = `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0, protocol: TCP}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          http_filters: [{name: envoy.filters.http.router}]
          local_reply_config:
            mappers:
            - filter: {header_filter: {header: {name: ":method", string_match: {exact: POST}}}}
              status_code: 401
              body: {inline_string: "not allowed"}
              headers_to_add:
              - header: {key: x-original-code, value: "%RESPONSE_CODE%"}
            - filter: {and_filter: {filters: [{status_code_filter: {comparison: {op: EQ, value: {default_value: 503, runtime_key: unused}}}}, {duration_filter: {comparison: {op: GE, value: {default_value: 0}}}}]}}
              body_format_override:
                json_format: {code: "%RESPONSE_CODE%", message: "%LOCAL_REPLY_BODY%", path: "%REQ(:PATH)%"}
            - filter: {header_filter: {header: {name: ":method", string_match: {exact: GET}}}}
              body_format_override:
                text_format_source: {inline_string: "<h1>%LOCAL_REPLY_BODY%</h1>"}
                content_type: "text/html; charset=UTF-8"
            body_format:
              text_format: "fallback: %LOCAL_REPLY_BODY% %RESPONSE_CODE%"
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /direct}
                direct_response: {status: 200, body: {inline_string: direct}}
              - match: {prefix: /down}
                route: {cluster: down}
  clusters:
  - name: down
    connect_timeout: 5s
    load_assignment:
      cluster_name: down
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{DOWNPORT}}}}}}]}]
`

// TestLocalReplyConfig: local_reply_config rewrites every reply the
// proxy makes itself (no route, an unreachable upstream, a direct
// response) as Envoy does: the first matching mapper's body, headers
// (seeing the original status) and status, then its body format or the
// fallback one, with the format's content type.
func TestLocalReplyConfig(t *testing.T) {
	down := refusedAddr(t) // nothing listens there
	_, downPort, _ := strings.Cut(down, ":")
	f := startYAML(t, strings.ReplaceAll(localReplyYAML, "{{DOWNPORT}}", downPort), "")
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		contentType  string
		header       [2]string // a header the reply must carry
	}{
		// Mapper 1: body and status replaced, the header added with the
		// status before the rewrite, then the fallback format (which
		// sees the new status).
		{"POST", "/nothing", 401, "fallback: not allowed 401", "text/plain", [2]string{"X-Original-Code", "404"}},
		// Mapper 2: the router's 503 as JSON.
		{"GET", "/down", 503, `{"code":503,"message":"upstream connect error or disconnect/reset before headers. reset reason: connection failure","path":"/down"}` + "\n", "application/json", [2]string{}},
		// Mapper 3: a 404 without a body gets one, as envoy-demo.yaml's
		// welcome page.
		{"GET", "/nothing", 404, "<h1></h1>", "text/html; charset=UTF-8", [2]string{}},
		// Mapper 3 on a direct response.
		{"GET", "/direct", 200, "<h1>direct</h1>", "text/html; charset=UTF-8", [2]string{}},
		// No mapper matches: the fallback format.
		{"PUT", "/nothing", 404, "fallback:  404", "text/plain", [2]string{}},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+f.addr+tc.path, nil)
		resp, body := do(t, req)
		if resp.StatusCode != tc.status || body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != tc.contentType {
			t.Errorf("%s %s: content-type %q, want %q", tc.method, tc.path, ct, tc.contentType)
		}
		if tc.header[0] != "" && resp.Header.Get(tc.header[0]) != tc.header[1] {
			t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, tc.header[0], resp.Header.Get(tc.header[0]), tc.header[1])
		}
	}
	// The access log and stats see the rewritten status.
	if n := f.st.Counter("http.in.downstream_rq_4xx").Value(); n != 3 {
		t.Errorf("downstream_rq_4xx = %d, want 3", n)
	}
}

// TestLocalReplyNoBody: a mapper that empties the body takes the
// content-type away with it, as Envoy sends a body-less reply.
func TestLocalReplyNoBody(t *testing.T) {
	yaml := strings.Replace(localReplyYAML, `            body_format:
              text_format: "fallback: %LOCAL_REPLY_BODY% %RESPONSE_CODE%"
`, "", 1)
	yaml = strings.Replace(yaml, `body: {inline_string: "not allowed"}`, `body: {inline_string: ""}`, 1)
	f := startYAML(t, strings.ReplaceAll(yaml, "{{DOWNPORT}}", "1"), "")
	req, _ := http.NewRequest("POST", "http://"+f.addr+"/direct", nil)
	resp, body := do(t, req)
	if resp.StatusCode != 401 || body != "" || resp.Header.Get("Content-Type") != "" || resp.ContentLength != 0 {
		t.Errorf("POST /direct: %d %q content-type %q length %d, want 401 with no body", resp.StatusCode, body, resp.Header.Get("Content-Type"), resp.ContentLength)
	}
}

// TestEnvoyDemoShape: the shape of Envoy's own demo config, which
// local_reply_config was the only blocker of: a front listener routes
// everything to a cluster that is a second listener of the same proxy,
// whose route configuration has no virtual host, so every request gets
// its 404 — which a mapper turns into an HTML page for GET.
func TestEnvoyDemoShape(t *testing.T) {
	back := freeAddr(t)
	_, backPort, _ := strings.Cut(back, ":")
	yaml := `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          codec_type: AUTO
          stat_prefix: front
          route_config:
            name: front
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: self}}]}
          http_filters: [{name: envoy.filters.http.router}]
  - name: back
    address: {socket_address: {protocol: TCP, address: 127.0.0.1, port_value: ` + backPort + `}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          codec_type: AUTO
          stat_prefix: back
          local_reply_config:
            mappers:
            - filter: {header_filter: {header: {name: ":method", string_match: {exact: GET}}}}
              body_format_override:
                text_format_source:
                  inline_string: |
                    <html><body><h1>Hello from the back listener</h1></body></html>
                content_type: "text/html; charset=UTF-8"
          route_config:
            name: empty
          http_filters: [{name: envoy.filters.http.router}]
  clusters:
  - name: self
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: self
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + backPort + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/anything", nil)
	resp, body := do(t, req)
	if resp.StatusCode != 404 || body != "<html><body><h1>Hello from the back listener</h1></body></html>\n" ||
		resp.Header.Get("Content-Type") != "text/html; charset=UTF-8" {
		t.Errorf("GET: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	req, _ = http.NewRequest("DELETE", "http://"+f.addr+"/anything", nil)
	if resp, body := do(t, req); resp.StatusCode != 404 || body != "" {
		t.Errorf("DELETE: %d %q, want an empty 404", resp.StatusCode, body)
	}
}

// TestLocalReplyCodecRefusals: the replies the HTTP/1 codec makes before
// a stream begins (a malformed head, HTTP/1.0 without accept_http_10,
// an upgrade no upgrade_configs allow) go through local_reply_config
// too, as Envoy's stream for the refused request does.
func TestLocalReplyCodecRefusals(t *testing.T) {
	yaml := strings.Replace(localReplyYAML, "          local_reply_config:\n", `          local_reply_config:
            mappers:
            - filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 400}}}}
              headers_to_add:
              - header: {key: x-refused, value: "%RESPONSE_CODE_DETAILS%"}
              body_format_override:
                json_format: {status: "%RESPONSE_CODE%", reason: "%LOCAL_REPLY_BODY%"}
`, 1)
	yaml = strings.Replace(yaml, "            mappers:\n            - filter: {header_filter: {header: {name: \":method\", string_match: {exact: POST}}}}", "            - filter: {header_filter: {header: {name: \":method\", string_match: {exact: POST}}}}", 1)
	f := startYAML(t, strings.ReplaceAll(yaml, "{{DOWNPORT}}", "1"), "")
	for _, tc := range []struct {
		name, request string
		status        int
		body          string
		details       string
	}{
		{"NUL in a header", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400, `{"reason":"Bad Request","status":400}` + "\n", "http1.invalid_characters"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", 426, `{"reason":"Upgrade Required","status":426}` + "\n", "http1.codec_error"},
		{"upgrade", "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 403, `{"reason":"","status":403}` + "\n", "upgrade_failed"},
	} {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, tc.request)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != tc.status || string(b) != tc.body || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Refused") != tc.details {
			t.Errorf("%s: %d %q content-type %q x-refused %q, want %d %q application/json %q", tc.name, resp.StatusCode, b,
				resp.Header.Get("Content-Type"), resp.Header.Get("X-Refused"), tc.status, tc.body, tc.details)
		}
	}
	// HTTP/2's refusal of too many headers too.
	h2 := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
	for i := 0; i < 101; i++ {
		req.Header.Add(fmt.Sprintf("X-H%d", i), "v")
	}
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"reason":"Request Header Fields Too Large","status":431}` + "\n"; resp.StatusCode != 431 || string(b) != want ||
		resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Refused") != "http2.too_many_headers" {
		t.Errorf("h2 too many headers: %d %q content-type %q x-refused %q", resp.StatusCode, b, resp.Header.Get("Content-Type"), resp.Header.Get("X-Refused"))
	}
}

// TestCodecRefusalHeaders: a refusal made before any stream carries what
// the connection manager puts on every response (date, server under
// server_header_transformation, via), as Envoy's does.
func TestCodecRefusalHeaders(t *testing.T) {
	for _, tc := range []struct {
		hcm, server string
	}{
		{"          server_name: edge\n          via: 1.1 edge", "edge"},
		{"          server_name: edge\n          via: 1.1 edge\n          server_header_transformation: PASS_THROUGH", ""},
	} {
		f := startYAML(t, strings.NewReplacer("{{HCM}}", tc.hcm, "{{UPPORT}}", "1").Replace(pathYAML), "")
		for _, request := range []string{
			"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",                               // a malformed head
			"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", // an unconfigured upgrade
		} {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, request)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("Date") == "" || resp.Header.Get("Server") != tc.server || resp.Header.Get("Via") != "1.1 edge" {
				t.Errorf("%q: %d date %q server %q via %q, want server %q via 1.1 edge", request, resp.StatusCode,
					resp.Header.Get("Date"), resp.Header.Get("Server"), resp.Header.Get("Via"), tc.server)
			}
		}
	}
}
