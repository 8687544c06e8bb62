package conformance

// The harness: the real wasmproxy binary (built once per test binary),
// an Envoy config with one listener per plugin, a real HTTP upstream that
// echoes what it received, and helpers to read the admin API and logs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
	scratch    string
)

func TestMain(m *testing.M) {
	var err error
	scratch, err = os.MkdirTemp("", "wasmproxy-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(scratch)
	os.Exit(code)
}

// wasmproxyBinary builds ./cmd/wasmproxy once per test binary.
func wasmproxyBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryPath = filepath.Join(scratch, "wasmproxy")
		cmd := exec.Command("go", "build", "-o", binaryPath, "./cmd/wasmproxy")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build ./cmd/wasmproxy: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// freePort hands out a loopback port (testnet.FreePort).
func freePort(t *testing.T) int { return testnet.FreePort(t) }

// calloutTargetBody is what the upstream answers on /callout-target.
const calloutTargetBody = "callout target body\n"

// echoed is what the upstream received, as it answers it in JSON.
type echoed struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Headers  map[string][]string `json:"headers"` // lower-case names
	Body     string              `json:"body"`
	Trailers map[string][]string `json:"trailers,omitempty"` // lower-case names
}

func (e *echoed) header(name string) string {
	if v := e.Headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// upstream is a real HTTP server on loopback that echoes every request as
// JSON and sets two headers for plugins to remove and replace.
type upstream struct {
	addr     string
	mu       sync.Mutex
	received []echoed
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e := echoed{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: map[string][]string{}, Body: string(body)}
	for k, v := range r.Header {
		e.Headers[strings.ToLower(k)] = v
	}
	for k, v := range r.Trailer {
		if e.Trailers == nil {
			e.Trailers = map[string][]string{}
		}
		e.Trailers[strings.ToLower(k)] = v
	}
	u.mu.Lock()
	u.received = append(u.received, e)
	u.mu.Unlock()
	if r.URL.Path == "/reset-midbody" {
		// Headers and part of the body, then the connection drops.
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	if r.URL.Path == "/callout-target" {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, calloutTargetBody)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream-Remove", "remove me")
	w.Header().Set("X-Upstream-Replace", "original")
	// /trailers answers with a trailer (chunked), for the response
	// trailer callbacks.
	trailers := strings.HasPrefix(r.URL.Path, "/trailers/")
	if trailers {
		w.Header().Set("Trailer", "X-Upstream-Trailer")
	}
	json.NewEncoder(w).Encode(e)
	if trailers {
		w.Header().Set("X-Upstream-Trailer", "original")
	}
}

// requests returns what the upstream received on paths with prefix.
func (u *upstream) requests(prefix string) []echoed {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []echoed
	for _, e := range u.received {
		if strings.HasPrefix(e.Path, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// plugin is one plugin under test, served on its own listener.
type plugin struct {
	name string // plugin and listener name
	lang string // what the plugin writes into x-conf-lang etc.
	wasm string
	// noMapSize: the plugin cannot call proxy_get_header_map_size (the Go
	// SDK has no wrapper for it).
	noMapSize bool
	addr      string // listener address, set by startProxy
	// tcp: the plugin also runs as a network filter ahead of a tcp_proxy
	// to an echo service, on tcpAddr (its own VM, so the HTTP areas'
	// counts are untouched).
	tcp     bool
	tcpAddr string
}

func (p *plugin) vmID() string         { return "vm-" + p.name }
func (p *plugin) vmConfig() string     { return "vm-config-" + p.lang }
func (p *plugin) pluginConfig() string { return "plugin-config-" + p.lang }

// rootID is the same for every plugin: the AssemblyScript SDK looks its
// root context up by it.
const rootID = "conformance"

// proxy is one running wasmproxy process.
type proxy struct {
	t        *testing.T
	cmd      *exec.Cmd
	admin    string
	upstream *upstream
	health   *healthServer
	plugins  map[string]*plugin
	mu       sync.Mutex
	logs     bytes.Buffer
	done     chan struct{}
	exited   atomic.Bool
}

// startProxy writes a config with one listener per plugin, all routing to
// cluster "upstream" (also the http_call target), starts wasmproxy with
// two instances per plugin (so shared data is really shared), and waits
// until the admin API says LIVE.
func startProxy(t *testing.T, plugins ...*plugin) *proxy {
	t.Helper()
	bin := wasmproxyBinary(t)
	up := startUpstream(t)
	health, grpcAddr := startGrpcUpstream(t)
	p := &proxy{t: t, upstream: up, health: health, plugins: map[string]*plugin{}, done: make(chan struct{})}
	var listeners strings.Builder
	for _, pl := range plugins {
		pl.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p.plugins[pl.name] = pl
		fmt.Fprintf(&listeners, listenerTemplate, pl.name, strings.TrimPrefix(pl.addr, "127.0.0.1:"), pl.name,
			pl.name, rootID, pl.pluginConfig(), pl.vmID(), pl.vmConfig(), pl.wasm)
		if pl.tcp {
			pl.tcpAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
			fmt.Fprintf(&listeners, tcpListenerTemplate, pl.name, strings.TrimPrefix(pl.tcpAddr, "127.0.0.1:"),
				pl.name, rootID, pl.pluginConfig(), pl.vmID(), pl.vmConfig(), pl.wasm)
		}
	}
	_, echoPort, _ := net.SplitHostPort(startEcho(t))
	_, upPort, _ := net.SplitHostPort(up.addr)
	p.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, adminPort, _ := net.SplitHostPort(p.admin)
	_, grpcPort, _ := net.SplitHostPort(grpcAddr)
	refusedPort := strconv.Itoa(freePort(t)) // nothing listens there
	cfg := fmt.Sprintf(configTemplate, listeners.String(), upPort, grpcPort, refusedPort, echoPort, adminPort)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	p.cmd = exec.Command(bin, "-c", "envoy.yaml", "--concurrency", "2", "-l", "info",
		"--cache-dir", filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"))
	p.cmd.Dir = dir
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.cmd.Wait()
		p.exited.Store(true)
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)

	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "LIVE" {
				return p
			}
		}
		if p.exited.Load() {
			t.Fatalf("wasmproxy exited before it was ready:\n%s\nconfig:\n%s", p.Logs(), cfg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("wasmproxy not ready after 90s:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const listenerTemplate = `
  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: %s } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match:
                  prefix: "/"
                  headers: [{ name: x-conf-route, string_match: { exact: rerouted } }]
                route: { cluster: upstream, prefix_rewrite: "/rerouted/" }
              - match: { prefix: "/" }
                route: { cluster: upstream }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: %s
                root_id: %s
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: %s
                vm_config:
                  vm_id: %s
                  runtime: envoy.wasm.runtime.v8
                  configuration:
                    "@type": type.googleapis.com/google.protobuf.StringValue
                    value: %s
                  code: { local: { filename: %q } }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`

// tcpListenerTemplate is the plugin as envoy.filters.network.wasm ahead
// of a tcp_proxy to the echo cluster, in a VM of its own.
const tcpListenerTemplate = `
  - name: %s-tcp
    address: { socket_address: { address: 127.0.0.1, port_value: %s } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
          config:
            name: %s
            root_id: %s
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: %s
            vm_config:
              vm_id: %s-tcp
              runtime: envoy.wasm.runtime.v8
              configuration:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: %s
              code: { local: { filename: %q } }
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: conformance_tcp
          cluster: echo
`

// startEcho runs a TCP service that echoes each connection until the
// client half-closes, and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

const configTemplate = `
node:
  id: conformance-node
  cluster: conformance-cluster
static_resources:
  listeners:%s
  clusters:
  - name: upstream
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }
  - name: grpc
    connect_timeout: 1s
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: grpc
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }
  - name: refused
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: refused
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }
  - name: echo
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: %s } }
`

// Logs returns everything wasmproxy printed so far.
func (p *proxy) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog waits up to 10s for a log line containing every part.
func (p *proxy) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(p.Logs(), "\n") {
			all := true
			for _, part := range parts {
				if !strings.Contains(line, part) {
					all = false
					break
				}
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within 10s:\n%s", parts, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *proxy) stop() {
	if p.exited.Load() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			p.t.Errorf("wasmproxy exited %d after SIGTERM:\n%s", code, p.Logs())
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("wasmproxy did not stop within 30s of SIGTERM")
	}
}

// adminGet returns an admin endpoint's body.
func (p *proxy) adminGet(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// response is one answer through the proxy, with the client's local
// address (to compare with the source.* properties).
type response struct {
	status    int
	header    http.Header
	body      string
	localAddr *net.TCPAddr
	sent      time.Time // just before the request was written
	received  time.Time // after the whole response was read
}

// echo decodes the upstream's JSON echo from the front of the body.
func (r *response) echo(t *testing.T) *echoed {
	t.Helper()
	var e echoed
	if err := json.NewDecoder(strings.NewReader(r.body)).Decode(&e); err != nil {
		t.Fatalf("response body is not the upstream's echo (status %d): %v\n%s", r.status, err, r.body)
	}
	return &e
}

// do sends one request on a fresh connection through pl's listener.
func do(t *testing.T, pl *plugin, method, path string, header http.Header, body io.Reader) *response {
	t.Helper()
	var local atomic.Pointer[net.TCPAddr]
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				local.Store(c.LocalAddr().(*net.TCPAddr))
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	req, err := http.NewRequest(method, "http://"+pl.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, path, pl.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s via %s: reading body: %v", method, path, pl.name, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: string(b), localAddr: local.Load(), sent: sent, received: time.Now()}
}
