package proxy

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEdgeGatewayConfig runs config/testdata/edge_gateway.envoytest (an
// edge gateway combining the forwarding headers, path normalization,
// local_reply_config, the server header and an access log) with its
// ports and log path moved into the test, and checks how the pieces
// work together: the upstream sees the normalized path with the trusted
// client, the gateway's own refusals come out as JSON, and the access
// log on disk has each request.
func TestEdgeGatewayConfig(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("..", "config", "testdata", "edge_gateway.envoytest"))
	if err != nil {
		t.Fatal(err)
	}
	yaml, _, _ := strings.Cut(string(golden), "\n----------\n")
	got := make(chan http.Header, 1)
	paths := make(chan string, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		paths <- r.RequestURI
		w.Header().Set("Server", "shop/2")
		w.Write([]byte("ok"))
	})
	_, upPort := edgeSplitPort(up)
	logPath := filepath.Join(t.TempDir(), "access.log")
	yaml = strings.NewReplacer("port_value: 8080", "port_value: 0", "port_value: 9000", "port_value: "+upPort,
		"/var/log/gateway/access.log", logPath).Replace(yaml)
	f := startYAML(t, yaml, "")

	// Proxied: path normalized, the client is the load balancer's entry,
	// control headers gone, via added both ways, the upstream's server kept.
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/shop//cart/./items/../list?x=1", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.9, 203.0.113.50")
	req.Header.Set("X-Envoy-Max-Retries", "9")
	resp, body := do(t, req)
	if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("Server") != "shop/2" || resp.Header.Get("Via") != "1.1 edge-gw" {
		t.Fatalf("proxied: %d %q server %q via %q", resp.StatusCode, body, resp.Header.Get("Server"), resp.Header.Get("Via"))
	}
	seen, path := <-got, <-paths
	if path != "/shop/cart/list?x=1" {
		t.Errorf("upstream path %q, want /shop/cart/list?x=1", path)
	}
	if seen.Get("X-Envoy-External-Address") != "203.0.113.50" || seen.Get("X-Envoy-Max-Retries") != "" || seen.Get("Via") != "1.1 edge-gw" ||
		!strings.HasPrefix(seen.Get("X-Forwarded-For"), "198.51.100.9, 203.0.113.50,") {
		t.Errorf("upstream headers: external %q max-retries %q via %q xff %q", seen.Get("X-Envoy-External-Address"),
			seen.Get("X-Envoy-Max-Retries"), seen.Get("Via"), seen.Get("X-Forwarded-For"))
	}

	// The gateway's own answers: a normalized path that meets the admin
	// route, and an escaped slash, both as JSON with its server name.
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/shop/../admin/users", `{"error":"direct_response","message":"forbidden","path":"/admin/users","status":403}`, 403},
		{"/shop/a%2Fb", `{"error":"path_normalization_failed","message":"","path":"/shop/a%2Fb","status":400}`, 400},
	} {
		resp, body := do(t, edgeGET(t, "http://"+f.addr+tc.path))
		if resp.StatusCode != tc.status || strings.TrimSpace(body) != tc.want || resp.Header.Get("Content-Type") != "application/json" ||
			resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Server") != "edge-gw" {
			t.Errorf("%s: %d %q content-type %q cache-control %q server %q", tc.path, resp.StatusCode, body,
				resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), resp.Header.Get("Server"))
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Errorf("%s: body is not JSON: %v", tc.path, err)
		}
	}

	f.srv.FlushAccessLogs()
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	want := "203.0.113.50 GET /shop/cart/list?x=1 200 via_upstream\n" +
		"127.0.0.1 GET /admin/users 403 direct_response\n" +
		"127.0.0.1 GET /shop/a%2Fb 400 path_normalization_failed\n"
	if string(log) != want {
		t.Errorf("access log:\n%s\nwant:\n%s", log, want)
	}
}

func edgeSplitPort(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

func edgeGET(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
