package realistic_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// loadTestdata reads a testdata config (the part above the dashes) with
// each replacements pair applied, as a deployment's hosts and ports are
// swapped for the test's loopback servers.
func loadTestdata(t *testing.T, name string, replacements ...string) *config.Bootstrap {
	t.Helper()
	content, err := os.ReadFile(filepath.Join("testdata", name+".envoytest"))
	if err != nil {
		t.Fatal(err)
	}
	input, _, _ := strings.Cut(string(content), "\n----------\n")
	input = strings.NewReplacer(replacements...).Replace(input)
	cfg, err := config.Parse([]byte(input), name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runProxy(t *testing.T, cfg *config.Bootstrap) *wasmproxy.Proxy {
	t.Helper()
	ctx := context.Background()
	p, err := wasmproxy.New(ctx, wasmproxy.Options{Bootstrap: cfg, CacheDir: t.TempDir(), Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p
}

func port(t *testing.T, srv *httptest.Server) string {
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExtAuthzLuaBehaves runs ext_authz_lua with a real authorization
// service and upstream on loopback: unauthorized requests get the
// service's 403 and never reach the upstream; authorized ones carry the
// service's x-current-user (and only that) upstream; the health route
// skips the check; Lua stamps every response, the denial (a local reply,
// which runs the encoder filters as in Envoy) included.
func TestExtAuthzLuaBehaves(t *testing.T) {
	var mu sync.Mutex
	var checks []string
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		checks = append(checks, r.URL.Path)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer token1" {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "denied")
			return
		}
		w.Header().Set("X-Current-User", "user1")
		w.Header().Set("X-Not-Allowed", "dropped")
		w.WriteHeader(http.StatusOK)
	}))
	defer authz.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "user="+r.Header.Get("X-Current-User")+" other="+r.Header.Get("X-Not-Allowed"))
	}))
	defer upstream.Close()

	cfg := loadTestdata(t, "ext_authz_lua",
		"address: 0.0.0.0, port_value: 8000", "address: 127.0.0.1, port_value: 0",
		"address: upstream-service, port_value: 8080", "address: 127.0.0.1, port_value: "+port(t, upstream),
		"address: extauthz, port_value: 9002", "address: 127.0.0.1, port_value: "+port(t, authz),
		"timeout: 0.25s", "timeout: 30s")
	p := runProxy(t, cfg)
	base := "http://" + p.Addr("")

	client := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range []struct {
		name, path, auth string
		status           int
		body, stamp      string
		checkedAtAuthzAs string
	}{
		{"no token", "/get", "", 403, "denied", "ext_authz", "/get"}, // local replies pass the encoders too
		{"token", "/get", "Bearer token1", 200, "user=user1 other=", "ext_authz", "/get"},
		{"health route skips the check", "/healthz", "", 200, "ok", "ext_authz", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			checks = nil
			mu.Unlock()
			req, _ := http.NewRequest("GET", base+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Errorf("got %d %q; want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if got := resp.Header.Get("X-Checked-By"); got != tc.stamp {
				t.Errorf("x-checked-by %q; want %q", got, tc.stamp)
			}
			mu.Lock()
			got := strings.Join(checks, ",")
			mu.Unlock()
			if got != tc.checkedAtAuthzAs {
				t.Errorf("authorization service saw %q; want %q", got, tc.checkedAtAuthzAs)
			}
		})
	}
}

// TestGRPCGatewayBehaves runs grpc_websocket against loopback servers: a
// browser's CORS preflight from an allowed origin is answered by the
// proxy; a gRPC call (HTTP/2 to the h2c backend) that first gets a
// trailers-only UNAVAILABLE is retried and succeeds; a plain request goes
// to the other backend.
func TestGRPCGatewayBehaves(t *testing.T) {
	var mu sync.Mutex
	grpcCalls := 0
	grpcSrv := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		grpcCalls++
		n := grpcCalls
		mu.Unlock()
		w.Header().Set("Content-Type", "application/grpc")
		if n == 1 || r.ProtoMajor != 2 {
			w.Header().Set("Grpc-Status", "14") // trailers-only UNAVAILABLE
			w.WriteHeader(200)
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set("Grpc-Status", "0")
	}), &http2.Server{}))
	defer grpcSrv.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "web "+r.URL.Path)
	}))
	defer web.Close()

	cfg := loadTestdata(t, "grpc_websocket",
		"address: 0.0.0.0, port_value: 8080", "address: 127.0.0.1, port_value: 0",
		"address: grpc-server, port_value: 8081", "address: 127.0.0.1, port_value: "+port(t, grpcSrv),
		"address: service-ws, port_value: 80", "address: 127.0.0.1, port_value: "+port(t, web))
	p := runProxy(t, cfg)
	base := "http://" + p.Addr("gateway")
	client := &http.Client{Timeout: 30 * time.Second}

	pre, _ := http.NewRequest("OPTIONS", base+"/echo.Echo/Say", nil)
	pre.Header.Set("Origin", "https://app.example.com")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := client.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	call, _ := http.NewRequest("POST", base+"/echo.Echo/Say", strings.NewReader("\x00\x00\x00\x00\x00"))
	call.Header.Set("Content-Type", "application/grpc")
	call.Header.Set("TE", "trailers")
	// gRPC clients speak HTTP/2 (prior knowledge, h2c here).
	grpcClient := &http.Client{Timeout: 30 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err = grpcClient.Do(call)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mu.Lock()
	calls := grpcCalls
	mu.Unlock()
	if resp.StatusCode != 200 || resp.Trailer.Get("Grpc-Status") != "0" || calls != 2 {
		t.Errorf("gRPC call: %d, grpc-status %q (header %q), %d calls upstream; want 200, 0 after a retry (2 calls)",
			resp.StatusCode, resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Status"), calls)
	}

	resp, err = client.Get(base + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "web /index.html" {
		t.Errorf("plain request: %d %q", resp.StatusCode, body)
	}
}
