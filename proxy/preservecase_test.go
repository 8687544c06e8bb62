package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// headRecordingUpstream is an HTTP/1.1 server on a real socket that hands every
// request head it reads, byte for byte, to heads and answers each with
// response.
func headRecordingUpstream(t *testing.T, response string) (addr string, heads <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head bytes.Buffer
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					// The body, if any, read to its end through net/http's
					// parser (which sees the head again).
					req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(head.String()), br)))
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					ch <- head.String()
					if _, err := io.WriteString(c, response); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// headNames are the field names of an HTTP/1.1 head, in order.
func headNames(head string) []string {
	var names []string
	lines := strings.Split(head, "\r\n")
	for _, l := range lines[1:] {
		if name, _, ok := strings.Cut(l, ":"); ok {
			names = append(names, name)
		}
	}
	return names
}

func hasName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// TestPreserveCaseHeaderKeys: header_key_format's preserve_case
// stateful formatter, as Envoy's: the connection manager's remembers a
// request's names, written so to an HTTP/1.1 upstream; a cluster's
// remembers a response's names (and, with forward_reason_phrase, its
// reason phrase), written so to the HTTP/1.1 client. Names the proxy
// adds go out in lower case, or Proper-Case with
// formatter_type_on_envoy_headers PROPER_CASE. Real client and upstream
// sockets, bytes compared as sent.
func TestPreserveCaseHeaderKeys(t *testing.T) {
	const response = "HTTP/1.1 200 Everything Fine\r\nX-Upstream-Thing: a\r\nCONTENT-Length: 2\r\ncache-CONTROL: no-store\r\n\r\nok"
	const request = "GET /p HTTP/1.1\r\nHost: example.com\r\nX-Custom-Header: v\r\nx-lower: w\r\nACCEPT: */*\r\n\r\n"
	const streamed = "POST /p HTTP/1.1\r\nHost: example.com\r\nX-Custom-Header: v\r\nx-lower: w\r\nACCEPT: */*\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
	preserve := func(extra string) string {
		return `{stateful_formatter: {name: preserve_case, typed_config: {"@type": type.googleapis.com/envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig` + extra + `}}}`
	}
	for _, tc := range []struct {
		name            string
		hcm, cluster    string // header_key_format of each ("" none)
		wantReqNames    []string
		wantReqAdded    string // how the proxy's x-forwarded-proto is spelled
		wantStatusLine  string
		wantRespNames   []string
		wantRespAdded   string // how the proxy's x-envoy-upstream-service-time is spelled
		legacyClusterH1 bool
	}{
		{
			name: "both", hcm: preserve(""), cluster: preserve(", forward_reason_phrase: true"),
			wantReqNames: []string{"Host", "X-Custom-Header", "x-lower", "ACCEPT"}, wantReqAdded: "x-forwarded-proto",
			wantStatusLine: "HTTP/1.1 200 Everything Fine", wantRespNames: []string{"X-Upstream-Thing", "CONTENT-Length", "cache-CONTROL"},
			wantRespAdded: "x-envoy-upstream-service-time",
		},
		{
			name: "proper case on envoy headers", hcm: preserve(", formatter_type_on_envoy_headers: PROPER_CASE"), cluster: preserve(", formatter_type_on_envoy_headers: PROPER_CASE"),
			wantReqNames: []string{"Host", "X-Custom-Header", "x-lower", "ACCEPT"}, wantReqAdded: "X-Forwarded-Proto",
			wantStatusLine: "HTTP/1.1 200 OK", wantRespNames: []string{"X-Upstream-Thing", "CONTENT-Length", "cache-CONTROL"},
			wantRespAdded: "X-Envoy-Upstream-Service-Time", legacyClusterH1: true,
		},
		{
			// Only the cluster's: requests carry no formatter, so their
			// names go out in lower case (the cluster's own setting
			// formats nothing by itself, as Envoy's codec).
			name: "cluster only", cluster: preserve(", forward_reason_phrase: true"),
			wantReqNames: []string{"host", "x-custom-header", "x-lower", "accept"}, wantReqAdded: "x-forwarded-proto",
			wantStatusLine: "HTTP/1.1 200 Everything Fine", wantRespNames: []string{"X-Upstream-Thing", "CONTENT-Length", "cache-CONTROL"},
			wantRespAdded: "x-envoy-upstream-service-time",
		},
		{
			// The request's formatter wins over the cluster's
			// proper_case_words; the response has none, so the
			// connection manager's own (none) applies.
			name: "connection manager only, cluster proper case", hcm: preserve(""), cluster: "{proper_case_words: {}}",
			wantReqNames: []string{"Host", "X-Custom-Header", "x-lower", "ACCEPT"}, wantReqAdded: "x-forwarded-proto",
			wantStatusLine: "HTTP/1.1 200 OK", wantRespNames: []string{"x-upstream-thing", "content-length", "cache-control"},
			wantRespAdded: "x-envoy-upstream-service-time",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, heads := headRecordingUpstream(t, response)
			_, port, _ := net.SplitHostPort(up)
			hcm := ""
			if tc.hcm != "" {
				hcm = "          http_protocol_options: {header_key_format: " + tc.hcm + "}\n"
			}
			cfg := strings.Replace(yamlListener, "stat_prefix: in\n", "stat_prefix: in\n"+hcm, 1) + `
            virtual_hosts: [{name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]
` + yamlClusters
			if tc.cluster != "" {
				opts := `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {header_key_format: ` + tc.cluster + `}}
`
				if tc.legacyClusterH1 {
					opts = "    http_protocol_options: {header_key_format: " + tc.cluster + "}\n"
				}
				cfg = strings.Replace(cfg, "  - name: up\n    connect_timeout: 5s\n", "  - name: up\n    connect_timeout: 5s\n"+opts, 1)
			}
			f := startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(cfg), up)

			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			// The second on a reused upstream connection; the third with
			// a streamed (chunked) body, which the pool writes from an
			// http.Header.
			for _, request := range []string{request, request, streamed} {
				if _, err := io.WriteString(c, request); err != nil {
					t.Fatal(err)
				}
				var head string
				select {
				case head = <-heads:
				case <-time.After(20 * time.Second):
					t.Fatal("the upstream got no request")
				}
				names := headNames(head)
				for _, want := range tc.wantReqNames {
					if !hasName(names, want) {
						t.Errorf("upstream request names %q, want %q among them", names, want)
					}
				}
				if !hasName(names, tc.wantReqAdded) {
					t.Errorf("upstream request names %q, want the proxy's %q", names, tc.wantReqAdded)
				}

				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				var resp []string
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("response: %v (so far %q)", err, resp)
					}
					if line == "\r\n" {
						break
					}
					resp = append(resp, strings.TrimSuffix(line, "\r\n"))
				}
				if body := make([]byte, 2); true {
					if _, err := io.ReadFull(br, body); err != nil || string(body) != "ok" {
						t.Fatalf("body %q: %v", body, err)
					}
				}
				if resp[0] != tc.wantStatusLine {
					t.Errorf("status line %q, want %q", resp[0], tc.wantStatusLine)
				}
				respNames := headNames(strings.Join(resp, "\r\n"))
				for _, want := range append(tc.wantRespNames, tc.wantRespAdded) {
					if !hasName(respNames, want) {
						t.Errorf("response names %q, want %q among them", respNames, want)
					}
				}
			}
		})
	}
}
