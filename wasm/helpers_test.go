package wasm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// testDir holds built test plugins and the compilation cache shared by
// every test of the run, so each module is built and compiled once.
var testDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmproxy-wasm-test-")
	if err != nil {
		panic(err)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]*buildResult{}
)

type buildResult struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// buildPlugin compiles testdata/<name> with the standard Go toolchain for
// wasip1 as a reactor (-buildmode=c-shared), once per test run.
func buildPlugin(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	r := buildCache[name]
	if r == nil {
		r = &buildResult{}
		buildCache[name] = r
	}
	buildMu.Unlock()
	r.once.Do(func() {
		r.path = filepath.Join(testDir, name+".wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", r.path, ".")
		cmd.Dir = filepath.Join("testdata", name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0")
		r.out, r.err = cmd.CombinedOutput()
	})
	if r.err != nil {
		t.Fatalf("building testdata/%s: %v\n%s", name, r.err, r.out)
	}
	return r.path
}

// logSink collects log output for assertions.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// messages returns the message of every log line (Envoy's format:
// "[time][thread][level][logger] message"), in order; a host line's
// key=value attributes follow its message.
func (s *logSink) messages() []string {
	s.mu.Lock()
	text := s.buf.String()
	s.mu.Unlock()
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if m := envoyLine.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

var envoyLine = regexp.MustCompile(`^\[[^\]]*\]\[\d+\]\[\w+\]\[\w+\] (.*)$`)

// text returns everything logged so far.
func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// pluginLogs returns what the plugin logged (prefix removed) in order.
func (s *logSink) pluginLogs(prefix string) []string {
	var out []string
	for _, m := range s.messages() {
		if rest, ok := strings.CutPrefix(m, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

type testHost struct {
	*Host
	logs  *logSink
	stats *stats.Store
}

func newTestHost(t *testing.T, poolSize int) *testHost {
	t.Helper()
	sink := &logSink{}
	st := stats.New()
	h, err := NewHost(context.Background(), Options{
		CacheDir: filepath.Join(testDir, "cache"),
		PoolSize: poolSize,
		Logs:     logging.NewRegistry(sink, logging.LevelTrace),
		Stats:    st,
		Node:     &config.Node{ID: "node-1", Cluster: "cluster-1", Proto: []byte{0x0a, 0x06, 'n', 'o', 'd', 'e', '-', '1'}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return &testHost{Host: h, logs: sink, stats: st}
}

// goPlugin is the config of the httpfilter test plugin in a mode.
func goPlugin(t *testing.T, mode string) *config.WasmPlugin {
	return &config.WasmPlugin{
		Name:                "httpfilter",
		CodeFile:            buildPlugin(t, "httpfilter"),
		PluginConfiguration: []byte(mode),
		VMConfiguration:     []byte("vmconf"),
	}
}

func (h *testHost) load(t *testing.T, cfg *config.WasmPlugin) *Plugin {
	t.Helper()
	p, err := h.LoadPlugin(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	// Tests see the whole pool; TestLoadReturnsBeforePool sees the rest.
	p.waitPool()
	return p
}

// fakeCallbacks is the proxy side of one stream, recording what the
// filter asks for.
type fakeCallbacks struct {
	mu                         sync.Mutex
	reqHeaders, respHeaders    *filter.HeaderMap
	reqTrailers, respTrailers  *filter.HeaderMap
	info                       filter.StreamInfo
	continued                  []filter.Direction
	replies                    []fakeReply
	resets                     []string
	addedReqTrailers, addedRsp bool
}

type fakeReply struct {
	status  int
	body    string
	headers []filter.Pair
	details string
}

func (c *fakeCallbacks) Continue(dir filter.Direction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.continued = append(c.continued, dir)
}

func (c *fakeCallbacks) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies = append(c.replies, fakeReply{status, string(body), headers, details})
}

func (c *fakeCallbacks) Reset(details string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets = append(c.resets, details)
}

func (c *fakeCallbacks) RequestHeaders() *filter.HeaderMap   { return c.reqHeaders }
func (c *fakeCallbacks) ResponseHeaders() *filter.HeaderMap  { return c.respHeaders }
func (c *fakeCallbacks) RequestTrailers() *filter.HeaderMap  { return c.reqTrailers }
func (c *fakeCallbacks) ResponseTrailers() *filter.HeaderMap { return c.respTrailers }
func (c *fakeCallbacks) Info() *filter.StreamInfo            { return &c.info }

func (c *fakeCallbacks) AddRequestTrailers() *filter.HeaderMap {
	c.addedReqTrailers = true
	c.reqTrailers = filter.NewHeaderMap()
	return c.reqTrailers
}

func (c *fakeCallbacks) AddResponseTrailers() *filter.HeaderMap {
	c.addedRsp = true
	c.respTrailers = filter.NewHeaderMap()
	return c.respTrailers
}

// stream is a filter plus its fake proxy side.
type stream struct {
	filter.StreamFilter
	cb *fakeCallbacks
}

func newStream(p *Plugin) *stream {
	cb := &fakeCallbacks{}
	return &stream{StreamFilter: p.NewStreamFilter(cb), cb: cb}
}

// decodeHeaders gives the filter request headers the way the proxy does:
// the callbacks see the same map.
func (s *stream) decodeHeaders(end bool, pairs ...string) filter.HeadersStatus {
	s.cb.reqHeaders = headerMap(pairs...)
	return s.DecodeHeaders(s.cb.reqHeaders, end)
}

func (s *stream) encodeHeaders(end bool, pairs ...string) filter.HeadersStatus {
	s.cb.respHeaders = headerMap(pairs...)
	return s.EncodeHeaders(s.cb.respHeaders, end)
}

func (s *stream) finish() {
	s.OnLog()
	s.OnDestroy()
}

func headerMap(pairs ...string) *filter.HeaderMap {
	h := filter.NewHeaderMap()
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

// requireLogs checks that want appears in got as an ordered subsequence.
func requireLogs(t *testing.T, got []string, want ...string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("log line %q missing or out of order; plugin logged:\n  %s", want[i], strings.Join(got, "\n  "))
	}
}

const goPrefix = "wasm log httpfilter: "
