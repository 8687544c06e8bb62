package realistic_test

import (
	"context"
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
