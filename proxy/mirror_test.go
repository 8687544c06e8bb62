package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRequestMirror: request_mirror_policies send a copy of the request,
// as it goes upstream (path rewritten), to the mirror cluster with
// "-shadow" after the host; the main request is answered while the
// shadow upstream still holds its copy, and the shadow's own answer (a
// 500) reaches nobody. A zero runtime_fraction, a cluster_header the
// request lacks, a header naming no cluster, or a body past the route's
// per_request_buffer_limit_bytes mirror nothing; the
// header naming a cluster mirrors there; disable_shadow_host_suffix_append
// keeps the Host.
func TestRequestMirror(t *testing.T) {
	type seenReq struct{ host, uri, body string }
	shadowSeen := make(chan seenReq, 8)
	release := make(chan struct{})
	shadow := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shadowSeen <- seenReq{r.Host, r.RequestURI, string(b)}
		<-release
		w.WriteHeader(500)
	})
	t.Cleanup(func() { close(release) })
	main := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write([]byte("main:" + string(b)))
	})
	_, shadowPort, _ := strings.Cut(shadow, ":")
	_, mainPort, _ := strings.Cut(main, ":")
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /m/}
                route:
                  cluster: up
                  prefix_rewrite: /rewritten/
                  request_mirror_policies: [{cluster: shadow}]
              - match: {prefix: /zero}
                route:
                  cluster: up
                  request_mirror_policies:
                  - cluster: shadow
                    runtime_fraction: {default_value: {numerator: 0}, runtime_key: mirror.zero}
              - match: {prefix: /big}
                per_request_buffer_limit_bytes: 4
                route:
                  cluster: up
                  request_mirror_policies: [{cluster: shadow}]
              - match: {prefix: /hdr}
                route:
                  cluster: up
                  request_mirror_policies: [{cluster_header: x-mirror-to, disable_shadow_host_suffix_append: true}]
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + mainPort + `}}}}]}]
  - name: shadow
    load_assignment:
      cluster_name: shadow
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + shadowPort + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	shadowTotal := func() uint64 { return f.st.Counter("cluster.shadow.upstream_rq_total").Value() }
	send := func(method, uri, body, mirrorTo string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+f.addr+uri, strings.NewReader(body))
		if mirrorTo != "" {
			req.Header.Set("X-Mirror-To", mirrorTo)
		}
		resp, got := do(t, req)
		if resp.StatusCode != 200 || got != "main:"+body {
			t.Fatalf("%s %s: %d %q, want 200 %q", method, uri, resp.StatusCode, got, "main:"+body)
		}
	}

	// Not mirrored: the shadow is counted on the stream before the
	// response is sent, so the count is final once the client has it.
	send("GET", "/zero", "", "")
	send("GET", "/hdr", "", "")
	send("GET", "/hdr", "", "nosuchcluster")
	// A body past the route's per_request_buffer_limit_bytes abandons
	// the shadow (Envoy's retry_or_shadow_abandoned, in the route's
	// cluster); the main request goes on.
	send("POST", "/big", "payload", "")
	if n := shadowTotal(); n != 0 {
		t.Fatalf("shadow cluster got %d requests, want 0", n)
	}
	if n := f.st.Counter("cluster.up.retry_or_shadow_abandoned").Value(); n != 1 {
		t.Errorf("cluster.up.retry_or_shadow_abandoned = %d, want 1", n)
	}

	// Mirrored: the main answer arrives while the shadow upstream still
	// holds its request (it waits on release).
	send("POST", "/m/a?q=1", "payload", "")
	if got, want := <-shadowSeen, (seenReq{"127.0.0.1-shadow:" + strings.Split(f.addr, ":")[1], "/rewritten/a?q=1", "payload"}); got != want {
		t.Errorf("shadow got %+v, want %+v", got, want)
	}
	send("PUT", "/hdr", "x", "shadow")
	if got, want := <-shadowSeen, (seenReq{f.addr, "/hdr", "x"}); got != want {
		t.Errorf("shadow (cluster_header) got %+v, want %+v", got, want)
	}
	if n := shadowTotal(); n != 2 {
		t.Errorf("shadow cluster got %d requests, want 2", n)
	}
}

// TestShadowHost: Envoy's shadowAppendedHost.
func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com-shadow",
		"example.com:8080": "example.com-shadow:8080",
		"[::1]":            "[::1]-shadow",
		"[::1]:80":         "[::1]-shadow:80",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}
