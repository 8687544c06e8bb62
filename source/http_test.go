package source

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testregistry"
)

// serveFiles runs a real HTTPS server on 127.0.0.1 answering path →
// handler, and returns its base URL and a pool trusting it.
func serveFiles(t *testing.T, routes map[string]http.HandlerFunc) (string, *x509.CertPool) {
	t.Helper()
	tlsCfg, caPEM, err := testregistry.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range routes {
		mux.HandleFunc(p, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return "https://" + ln.Addr().String(), pool
}

func TestHTTPFetch(t *testing.T) {
	code := module("http")
	boxed, err := gzipBytes(mustTar(t, "filter.wasm", code))
	if err != nil {
		t.Fatal(err)
	}
	var flaky atomic.Int32
	big := append(module("big"), make([]byte, 2048)...)
	base, pool := serveFiles(t, map[string]http.HandlerFunc{
		"/plugin.wasm": func(w http.ResponseWriter, _ *http.Request) { w.Write(code) },
		"/plugin.tgz":  func(w http.ResponseWriter, _ *http.Request) { w.Write(boxed) },
		"/flaky.wasm": func(w http.ResponseWriter, _ *http.Request) {
			if flaky.Add(1) == 1 {
				http.Error(w, "warming up", http.StatusServiceUnavailable)
				return
			}
			w.Write(code)
		},
		"/down.wasm": func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) },
		"/text":      func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>hello</html>")) },
		"/big.wasm":  func(w http.ResponseWriter, _ *http.Request) { w.Write(big) },
	})
	sum := sha256Hex(code)
	closedLn, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closedLn.Addr().String() + "/x.wasm"
	closedLn.Close()

	tests := []struct {
		name        string
		url, sha    string
		max         int64
		want        []string // error substrings; none = success
		unavailable bool
	}{
		{name: "module with sha256", url: base + "/plugin.wasm", sha: sum},
		{name: "tar.gz unboxed, sha256 of the module", url: base + "/plugin.tgz", sha: sum},
		{name: "5xx retried", url: base + "/flaky.wasm", sha: sum},
		{name: "sha256 mismatch", url: base + "/plugin.wasm", sha: strings.Repeat("0", 64), want: []string{"sha256 mismatch", sum}},
		{name: "404", url: base + "/missing.wasm", sha: sum, want: []string{"404 Not Found"}},
		{name: "5xx after retries", url: base + "/down.wasm", sha: sum, want: []string{"502 Bad Gateway", "after 2 attempts"}, unavailable: true},
		{name: "not wasm", url: base + "/text", sha: sum, want: []string{"not a WebAssembly module", "<html>"}},
		{name: "oversized", url: base + "/big.wasm", max: 1024, want: []string{"over the 1024-byte limit"}},
		{name: "unreachable", url: closedURL, sha: sum, want: []string{"cannot connect"}, unavailable: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFetcher(t, Options{CacheDir: t.TempDir(), RootCAs: pool, MaxModuleBytes: tc.max})
			m, err := f.Fetch(ctxT(t), Request{URL: tc.url, SHA256: tc.sha, Timeout: 5 * time.Second, BackoffBase: 10 * time.Millisecond})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(m.Code, code) || m.Digest != sum {
					t.Fatalf("digest %s", m.Digest)
				}
				again, err := f.Fetch(ctxT(t), Request{URL: tc.url, SHA256: tc.sha})
				if err != nil || !again.FromCache {
					t.Fatalf("second fetch not from the cache: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "fetching "+tc.url+": ") {
				t.Errorf("error %q does not name the URL first", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if IsUnavailable(err) != tc.unavailable {
				t.Errorf("IsUnavailable(%v) = %v", err, !tc.unavailable)
			}
		})
	}
}

func mustTar(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	b, err := pluginTarNamed(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCredentialsInURLStayHidden fetches from a server that wants basic
// auth, with the credentials in the URL's userinfo (which the fetch
// sends): the fetch works, and neither the log lines nor an error show
// the password.
func TestCredentialsInURLStayHidden(t *testing.T) {
	const password = "basic-auth-pass-4411"
	code := module("private")
	base, pool := serveFiles(t, map[string]http.HandlerFunc{
		"/private.wasm": func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); !ok || user != "robot" || pass != password {
				http.Error(w, "who are you", http.StatusUnauthorized)
				return
			}
			w.Write(code)
		},
	})
	private := strings.Replace(base, "https://", "https://robot:"+password+"@", 1) + "/private.wasm"

	var logs bytes.Buffer
	f := newFetcher(t, Options{CacheDir: t.TempDir(), RootCAs: pool, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := f.Fetch(ctxT(t), Request{URL: private, SHA256: sha256Hex(code), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	_, err := f.Fetch(ctxT(t), Request{URL: private, SHA256: strings.Repeat("0", 64), Timeout: 5 * time.Second})
	if err == nil {
		t.Fatal("a digest mismatch was accepted")
	}
	wrong := strings.Replace(private, password, "wrong-"+password, 1)
	_, err401 := f.Fetch(ctxT(t), Request{URL: wrong, Timeout: 5 * time.Second, PullPolicy: PullAlways})
	if err401 == nil || !strings.Contains(err401.Error(), "401") {
		t.Fatalf("wrong credentials: %v", err401)
	}
	for what, text := range map[string]string{"log": logs.String(), "error": err.Error(), "401 error": err401.Error()} {
		if strings.Contains(text, password) {
			t.Errorf("the %s shows the password:\n%s", what, text)
		}
		if !strings.Contains(text, "robot:[redacted]@127.0.0.1") {
			t.Errorf("the %s does not name the URL with its password redacted:\n%s", what, text)
		}
	}
}
