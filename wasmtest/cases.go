package wasmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wasmproxy/wasmproxy/filter"
)

// CaseFile is a declarative test file: how to load the plugin, then
// cases, each a request (and optionally the upstream's response) in and
// expectations out. `wasmproxy plugin test FILE.wasm CASES.yaml` runs
// one; docs/guide.md describes the format. Unknown fields are errors.
type CaseFile struct {
	Plugin PluginSpec `yaml:"plugin"`
	Cases  []Case     `yaml:"cases"`
	path   string
}

// PluginSpec is how every case loads the plugin (Envoy's PluginConfig
// fields, plus the clusters its HTTP calls reach).
type PluginSpec struct {
	Name   string `yaml:"name"`
	RootID string `yaml:"root_id"`
	VMID   string `yaml:"vm_id"`
	// Configuration is the plugin configuration: a string as is, any
	// other YAML value as JSON.
	Configuration   Config            `yaml:"configuration"`
	VMConfiguration Config            `yaml:"vm_configuration"`
	Environment     map[string]string `yaml:"environment"`
	FailOpen        bool              `yaml:"fail_open"`
	// AllowOnHeadersStopIteration is Envoy's
	// allow_on_headers_stop_iteration.
	AllowOnHeadersStopIteration bool   `yaml:"allow_on_headers_stop_iteration"`
	LogLevel                    string `yaml:"log_level"`
	// Clusters the plugin may call, each with the reply every call gets.
	Clusters map[string]CallReply `yaml:"clusters"`
}

// Config is configuration text given in YAML as a string or as any
// value, which becomes JSON.
type Config struct {
	Text string
	Set  bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	c.Set = true
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		c.Text = n.Value
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("line %d: configuration: %v", n.Line, err)
	}
	c.Text = string(b)
	return nil
}

// CallReply answers the HTTP calls to one cluster.
type CallReply struct {
	Status   int        `yaml:"status"`
	Headers  HeaderList `yaml:"headers"`
	Body     string     `yaml:"body"`
	Trailers HeaderList `yaml:"trailers"`
	Fail     bool       `yaml:"fail"`
}

// HeaderList is headers in order: a YAML mapping (key: value) or a list
// of [key, value] pairs (for repeated keys).
type HeaderList []filter.Pair

// UnmarshalYAML implements yaml.Unmarshaler.
func (h *HeaderList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: header %q: the value must be a string", v.Line, k.Value)
			}
			*h = append(*h, filter.Pair{Key: strings.ToLower(k.Value), Value: v.Value})
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item.Kind != yaml.SequenceNode || len(item.Content) != 2 {
				return fmt.Errorf("line %d: a header in a list must be a [key, value] pair", item.Line)
			}
			*h = append(*h, filter.Pair{Key: strings.ToLower(item.Content[0].Value), Value: item.Content[1].Value})
		}
	default:
		return fmt.Errorf("line %d: headers must be a mapping or a list of [key, value] pairs", n.Line)
	}
	return nil
}

// Case is one request through the plugin.
type Case struct {
	Name string `yaml:"name"`
	// Configuration replaces the plugin configuration for this case.
	Configuration Config `yaml:"configuration"`
	// SharedData is stored before the request, as another plugin would.
	SharedData map[string]string `yaml:"shared_data"`
	// Ticks are delivered before the request.
	Ticks int `yaml:"ticks"`
	// Stream is what the proxy knows about the stream, for properties.
	Stream   StreamSpec   `yaml:"stream"`
	Request  MessageSpec  `yaml:"request"`
	Response *MessageSpec `yaml:"response"`
	Expect   Expect       `yaml:"expect"`
	line     int
}

// StreamSpec sets the stream's info, the source of the plugin's
// properties (source.address, xds.route_name, ...).
type StreamSpec struct {
	Source      string `yaml:"source"`      // client address, "ip:port"
	Destination string `yaml:"destination"` // listener address, "ip:port"
	Protocol    string `yaml:"protocol"`    // "HTTP/1.1", "HTTP/2"
	Route       string `yaml:"route"`
	VirtualHost string `yaml:"virtual_host"`
	Cluster     string `yaml:"cluster"`
}

func (sp StreamSpec) apply(info *filter.StreamInfo) error {
	for _, a := range []struct {
		field, value string
		to           *netip.AddrPort
	}{{"stream.source", sp.Source, &info.DownstreamAddr}, {"stream.destination", sp.Destination, &info.LocalAddr}} {
		if a.value == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(a.value)
		if err != nil {
			return fmt.Errorf("%s: %q is not ip:port", a.field, a.value)
		}
		*a.to = ap
	}
	if sp.Protocol != "" {
		info.Protocol = sp.Protocol
	}
	info.RouteName, info.VirtualHost, info.ClusterName = sp.Route, sp.VirtualHost, sp.Cluster
	return nil
}

// MessageSpec is a request or response to send: headers, then the body
// (whole, or in chunks), then trailers.
type MessageSpec struct {
	Headers  HeaderList `yaml:"headers"`
	Body     *string    `yaml:"body"`
	Chunks   []string   `yaml:"chunks"`
	Trailers HeaderList `yaml:"trailers"`
}

// Expect is what the case checks; everything is optional.
type Expect struct {
	// What each callback's answer did: "continue" or "pause", one value
	// for every call or a list with one per call.
	RequestHeaders   Actions `yaml:"request_headers"`
	RequestBody      Actions `yaml:"request_body"`
	RequestTrailers  Actions `yaml:"request_trailers"`
	ResponseHeaders  Actions `yaml:"response_headers"`
	ResponseBody     Actions `yaml:"response_body"`
	ResponseTrailers Actions `yaml:"response_trailers"`
	// LocalResponse the plugin sent; NoLocalResponse: it sent none.
	LocalResponse   *LocalExpect `yaml:"local_response"`
	NoLocalResponse bool         `yaml:"no_local_response"`
	// Upstream is what reached the upstream, Client what reached the
	// client; headers are a subset to find (null: must be absent).
	Upstream *MessageExpect `yaml:"upstream"`
	Client   *MessageExpect `yaml:"client"`
	// Logs: each entry a substring, or {level, contains}.
	Logs       []LogExpect       `yaml:"logs"`
	Metrics    map[string]int64  `yaml:"metrics"`
	SharedData map[string]string `yaml:"shared_data"`
	// HTTPCalls the plugin made, in order.
	HTTPCalls []CallExpect `yaml:"http_calls"`
	// PropertiesRead must each have been read ("request.path").
	PropertiesRead []string `yaml:"properties_read"`
	// Trap is a substring of the trap the plugin must hit (its callback,
	// panic message or reason: "in proxy_on_request_headers", "did not
	// return within"). A case whose plugin traps without it fails.
	Trap string `yaml:"trap"`
}

// Actions is one expected action for every call, or one per call.
type Actions []Action

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *Actions) UnmarshalYAML(n *yaml.Node) error {
	var items []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{n}
	case yaml.SequenceNode:
		items = n.Content
	default:
		return fmt.Errorf("line %d: want continue or pause, or a list of them", n.Line)
	}
	for _, it := range items {
		switch strings.ToLower(it.Value) {
		case "continue":
			*a = append(*a, Continue)
		case "pause":
			*a = append(*a, Pause)
		default:
			return fmt.Errorf("line %d: %q is not an action (want continue or pause)", it.Line, it.Value)
		}
	}
	return nil
}

// LocalExpect is an expected local response.
type LocalExpect struct {
	Status  int                `yaml:"status"`
	Body    *string            `yaml:"body"`
	Headers map[string]*string `yaml:"headers"`
}

// MessageExpect is what should have passed the plugin.
type MessageExpect struct {
	// Status: client only.
	Status   int                `yaml:"status"`
	Headers  map[string]*string `yaml:"headers"`
	Body     *string            `yaml:"body"`
	Trailers map[string]*string `yaml:"trailers"`
}

// LogExpect is a log line to find.
type LogExpect struct {
	Level    string `yaml:"level"`
	Contains string `yaml:"contains"`
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *LogExpect) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		l.Contains = n.Value
		return nil
	}
	type plain LogExpect
	return decodeStrict(n, (*plain)(l))
}

// CallExpect is an expected HTTP call.
type CallExpect struct {
	Cluster string             `yaml:"cluster"`
	Headers map[string]*string `yaml:"headers"`
	Body    *string            `yaml:"body"`
}

// decodeStrict decodes a node rejecting unknown fields, which Node.Decode
// alone does not.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// Lines are relative to the re-encoded node: point at the node.
		return fmt.Errorf("line %d: %s", n.Line, cleanYAMLError(err, 0))
	}
	return nil
}

var (
	yamlUnknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)
	yamlLinePrefix   = regexp.MustCompile(`line (\d+): `)
)

// cleanYAMLError rewords yaml.v3 errors for users: no Go type names, one
// line per problem; offset shifts line numbers (0 keeps them).
func cleanYAMLError(err error, offset int) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	msg = yamlUnknownField.ReplaceAllString(msg, `line $1: unknown field "$2"`)
	if offset != 0 {
		msg = yamlLinePrefix.ReplaceAllStringFunc(msg, func(s string) string {
			n, _ := strconv.Atoi(yamlLinePrefix.FindStringSubmatch(s)[1])
			return fmt.Sprintf("line %d: ", n+offset)
		})
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// ReadCaseFile reads and checks a case file. Errors name the file and the
// line: unknown fields, wrong types, a case without name or request
// headers, duplicate case names.
func ReadCaseFile(path string) (*CaseFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseCaseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.path = path
	return f, nil
}

// ParseCaseFile is ReadCaseFile for bytes.
func ParseCaseFile(data []byte) (*CaseFile, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, errors.New(cleanYAMLError(err, 0))
	}
	f := &CaseFile{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		return nil, errors.New(cleanYAMLError(err, 0))
	}
	// Lines of cases, for messages.
	if len(root.Content) == 1 {
		top := root.Content[0]
		for i := 0; i+1 < len(top.Content); i += 2 {
			if top.Content[i].Value == "cases" && top.Content[i+1].Kind == yaml.SequenceNode {
				for j, c := range top.Content[i+1].Content {
					if j < len(f.Cases) {
						f.Cases[j].line = c.Line
					}
				}
			}
		}
	}
	if len(f.Cases) == 0 {
		return nil, errors.New("no cases (want a top-level \"cases:\" list)")
	}
	seen := map[string]int{}
	for i := range f.Cases {
		c := &f.Cases[i]
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("line %d: case %d has no name", c.line, i+1)
		case seen[c.Name] != 0:
			return nil, fmt.Errorf("line %d: case %q: the name is already used on line %d", c.line, c.Name, seen[c.Name])
		case len(c.Request.Headers) == 0:
			return nil, fmt.Errorf("line %d: case %q: request.headers is required", c.line, c.Name)
		case c.Request.Body != nil && len(c.Request.Chunks) > 0:
			return nil, fmt.Errorf("line %d: case %q: request has both body and chunks", c.line, c.Name)
		case c.Response != nil && len(c.Response.Headers) == 0:
			return nil, fmt.Errorf("line %d: case %q: response.headers is required", c.line, c.Name)
		case c.Response != nil && c.Response.Body != nil && len(c.Response.Chunks) > 0:
			return nil, fmt.Errorf("line %d: case %q: response has both body and chunks", c.line, c.Name)
		}
		if err := c.Stream.apply(&filter.StreamInfo{}); err != nil {
			return nil, fmt.Errorf("line %d: case %q: %v", c.line, c.Name, err)
		}
		seen[c.Name] = c.line
	}
	return f, nil
}

// Line is the line a case starts on in its file.
func (c *Case) Line() int { return c.line }

// options turns the plugin section (and a case's override) into Load
// options.
func (f *CaseFile) options(c *Case, extra []Option) []Option {
	ps := f.Plugin
	var opts []Option
	if ps.Name != "" {
		opts = append(opts, Name(ps.Name))
	}
	if ps.RootID != "" {
		opts = append(opts, RootID(ps.RootID))
	}
	if ps.VMID != "" {
		opts = append(opts, VMID(ps.VMID))
	}
	conf := ps.Configuration
	if c.Configuration.Set {
		conf = c.Configuration
	}
	if conf.Set {
		opts = append(opts, PluginConfig(conf.Text))
	}
	if ps.VMConfiguration.Set {
		opts = append(opts, VMConfig(ps.VMConfiguration.Text))
	}
	keys := make([]string, 0, len(ps.Environment))
	for k := range ps.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		opts = append(opts, Env(k, ps.Environment[k]))
	}
	if ps.FailOpen {
		opts = append(opts, FailOpen())
	}
	if ps.AllowOnHeadersStopIteration {
		opts = append(opts, AllowHeadersStopIteration())
	}
	if ps.LogLevel != "" {
		opts = append(opts, LogLevel(ps.LogLevel))
	}
	for name, reply := range ps.Clusters {
		reply := reply
		opts = append(opts, Cluster(name, func(*HTTPCall) CallResponse {
			return CallResponse{Status: reply.Status, Headers: Headers(reply.Headers), Body: []byte(reply.Body),
				Trailers: Headers(reply.Trailers), Fail: reply.Fail}
		}))
	}
	return append(opts, extra...)
}

// RunCase runs case i against the compiled plugin wasmFile, reporting
// every unmet expectation through t in one message with the stream's
// trace and the plugin's logs. opts are added to the file's plugin
// options (a timeout, a compilation cache).
func (f *CaseFile) RunCase(t TB, wasmFile string, i int, opts ...Option) {
	t.Helper()
	c := &f.Cases[i]
	p := Load(t, wasmFile, f.options(c, opts)...)
	s, results := f.play(p, c)
	s.Complete()
	f.check(t, p, s, c, results)
}

// play sends the case's request and response and returns each callback's
// results in order.
func (f *CaseFile) play(p *Plugin, c *Case) (*HTTPStream, map[string][]Result) {
	for k, v := range c.SharedData {
		p.SetSharedData(k, []byte(v))
	}
	for n := 0; n < c.Ticks; n++ {
		p.Tick()
	}
	results := map[string][]Result{}
	add := func(r Result) { results[r.Callback] = append(results[r.Callback], r) }
	s := p.NewHTTPStream(func(info *filter.StreamInfo) { _ = c.Stream.apply(info) }) // checked by ParseCaseFile
	send(c.Request, s.SendRequestHeaders, s.SendRequestBody, s.SendRequestTrailers, add)
	if c.Response != nil {
		send(*c.Response, s.SendResponseHeaders, s.SendResponseBody, s.SendResponseTrailers, add)
	}
	return s, results
}

func send(m MessageSpec, headers func(Headers, bool) Result, body func([]byte, bool) Result, trailers func(Headers) Result, add func(Result)) {
	chunks := m.Chunks
	if m.Body != nil {
		chunks = []string{*m.Body}
	}
	hasTrailers := len(m.Trailers) > 0
	add(headers(Headers(m.Headers), len(chunks) == 0 && !hasTrailers))
	for i, ch := range chunks {
		add(body([]byte(ch), i == len(chunks)-1 && !hasTrailers))
	}
	if hasTrailers {
		add(trailers(Headers(m.Trailers)))
	}
}

// check compares what happened with the case's expectations.
func (f *CaseFile) check(t TB, p *Plugin, s *HTTPStream, c *Case, results map[string][]Result) {
	t.Helper()
	var bad []string
	e := &c.Expect
	for _, a := range []struct {
		field, callback string
		want            Actions
	}{
		{"request_headers", "proxy_on_request_headers", e.RequestHeaders},
		{"request_body", "proxy_on_request_body", e.RequestBody},
		{"request_trailers", "proxy_on_request_trailers", e.RequestTrailers},
		{"response_headers", "proxy_on_response_headers", e.ResponseHeaders},
		{"response_body", "proxy_on_response_body", e.ResponseBody},
		{"response_trailers", "proxy_on_response_trailers", e.ResponseTrailers},
	} {
		if len(a.want) == 0 {
			continue
		}
		got := results[a.callback]
		if len(got) == 0 {
			bad = append(bad, fmt.Sprintf("expect.%s: expected %s, but the case never reached %s", a.field, a.want, a.callback))
			continue
		}
		for i, r := range got {
			want := a.want[len(a.want)-1]
			if i < len(a.want) {
				want = a.want[i]
			} else if len(a.want) > 1 {
				bad = append(bad, fmt.Sprintf("expect.%s: %d actions listed, but %s was reached %d times", a.field, len(a.want), a.callback, len(got)))
				break
			}
			if r.Action != want {
				bad = append(bad, fmt.Sprintf("expect.%s: %s call %d: expected %s, got %s", a.field, a.callback, i+1, want, r.describe()))
			}
		}
	}
	local := s.LocalResponse()
	switch {
	case e.NoLocalResponse && local != nil:
		bad = append(bad, fmt.Sprintf("expect.no_local_response: the plugin sent local response %d %s", local.Status, quoteBody(local.Body)))
	case e.LocalResponse != nil && local == nil:
		bad = append(bad, fmt.Sprintf("expect.local_response: expected %d, but the plugin sent none", e.LocalResponse.Status))
	case e.LocalResponse != nil:
		if e.LocalResponse.Status != 0 && local.Status != e.LocalResponse.Status {
			bad = append(bad, fmt.Sprintf("expect.local_response.status: expected %d, got %d", e.LocalResponse.Status, local.Status))
		}
		if e.LocalResponse.Body != nil && string(local.Body) != *e.LocalResponse.Body {
			bad = append(bad, fmt.Sprintf("expect.local_response.body: expected %q, got %q", *e.LocalResponse.Body, local.Body))
		}
		bad = append(bad, matchHeaders("expect.local_response.headers", filter.NewHeaderMap(local.Headers...), e.LocalResponse.Headers)...)
	}
	if e.Upstream != nil {
		bad = append(bad, matchMessage("expect.upstream", s.Upstream(), e.Upstream, false)...)
	}
	if e.Client != nil {
		bad = append(bad, matchMessage("expect.client", s.Client(), e.Client, true)...)
	}
	logs := p.Logs()
	for _, l := range e.Logs {
		found := false
		for _, entry := range logs {
			if (l.Level == "" || entry.Level == l.Level) && strings.Contains(entry.Message, l.Contains) {
				found = true
				break
			}
		}
		if !found {
			what := fmt.Sprintf("a log line containing %q", l.Contains)
			if l.Level != "" {
				what = fmt.Sprintf("a log line at level %s containing %q", l.Level, l.Contains)
			}
			bad = append(bad, "expect.logs: expected "+what+", found none")
		}
	}
	for _, name := range sortedKeys(e.Metrics) {
		want := e.Metrics[name]
		got, ok := p.Metric(name)
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("expect.metrics.%s: expected %d, but the plugin defined no such metric (it has: %s)", name, want, formatMetrics(p.Metrics())))
		case got != want:
			bad = append(bad, fmt.Sprintf("expect.metrics.%s: expected %d, got %d", name, want, got))
		}
	}
	for _, key := range sortedKeys(e.SharedData) {
		want := e.SharedData[key]
		got, ok := p.SharedData(key)
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("expect.shared_data.%s: expected %q, but the key is not set", key, want))
		case string(got) != want:
			bad = append(bad, fmt.Sprintf("expect.shared_data.%s: expected %q, got %q", key, want, got))
		}
	}
	if e.HTTPCalls != nil {
		calls := p.HTTPCalls()
		if len(calls) != len(e.HTTPCalls) {
			bad = append(bad, fmt.Sprintf("expect.http_calls: expected %d calls, the plugin made %d%s", len(e.HTTPCalls), len(calls), p.refusedNote()))
		}
		for i, want := range e.HTTPCalls {
			if i >= len(calls) {
				break
			}
			got := calls[i]
			field := fmt.Sprintf("expect.http_calls[%d]", i)
			if want.Cluster != "" && got.Cluster != want.Cluster {
				bad = append(bad, fmt.Sprintf("%s.cluster: expected %q, got %q", field, want.Cluster, got.Cluster))
			}
			bad = append(bad, matchHeaders(field+".headers", got.Headers, want.Headers)...)
			if want.Body != nil && string(got.Body) != *want.Body {
				bad = append(bad, fmt.Sprintf("%s.body: expected %q, got %q", field, *want.Body, got.Body))
			}
		}
	}
	if len(e.PropertiesRead) > 0 {
		read := s.PropertiesRead()
		for _, want := range e.PropertiesRead {
			found := false
			for _, r := range read {
				if r == want || strings.TrimSuffix(r, " (not found)") == want {
					found = true
					break
				}
			}
			if !found {
				bad = append(bad, fmt.Sprintf("expect.properties_read: the plugin did not read %q (it read: %s)", want, strings.Join(read, ", ")))
			}
		}
	}
	trap, trapped := p.trapSince(0)
	switch {
	case e.Trap == "" && trapped:
		bad = append(bad, "the plugin trapped (expect.trap would accept a trap the case means to cause)")
	case e.Trap != "" && !trapped:
		bad = append(bad, fmt.Sprintf("expect.trap: expected a trap matching %q, but the plugin did not trap", e.Trap))
	case e.Trap != "" && !strings.Contains(trap, e.Trap):
		first, _, _ := strings.Cut(trap, "\n")
		bad = append(bad, fmt.Sprintf("expect.trap: expected a trap matching %q, got one %s", e.Trap, first))
	}
	if len(bad) > 0 {
		t.Errorf("%s", s.report(strings.Join(bad, "\n")))
	}
}

func matchMessage(field string, got Message, want *MessageExpect, client bool) []string {
	var bad []string
	if got.Headers == nil {
		return []string{field + ": expected a message, but nothing reached it"}
	}
	if client && want.Status != 0 {
		if st, _ := got.Headers.Get(":status"); st != strconv.Itoa(want.Status) {
			bad = append(bad, fmt.Sprintf("%s.status: expected %d, got %s", field, want.Status, st))
		}
	}
	bad = append(bad, matchHeaders(field+".headers", got.Headers, want.Headers)...)
	if want.Body != nil && string(got.Body) != *want.Body {
		bad = append(bad, fmt.Sprintf("%s.body: expected %q, got %q", field, *want.Body, got.Body))
	}
	if want.Trailers != nil {
		tr := got.Trailers
		if tr == nil {
			tr = filter.NewHeaderMap()
		}
		bad = append(bad, matchHeaders(field+".trailers", tr, want.Trailers)...)
	}
	return bad
}

func matchHeaders(field string, got *filter.HeaderMap, want map[string]*string) []string {
	var bad []string
	for _, k := range sortedKeys(want) {
		v, ok := got.Get(k)
		switch w := want[k]; {
		case w == nil && ok:
			bad = append(bad, fmt.Sprintf("%s.%s: expected absent, got %q", field, k, v))
		case w != nil && !ok:
			bad = append(bad, fmt.Sprintf("%s.%s: expected %q, but it is absent (headers: %s)", field, k, *w, formatPairs(got.Pairs())))
		case w != nil && v != *w:
			bad = append(bad, fmt.Sprintf("%s.%s: expected %q, got %q", field, k, *w, v))
		}
	}
	return bad
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// BenchCase measures case i: the plugin is loaded once, then each
// iteration plays the case on a new stream, with no timeout and no trace
// so the numbers are the plugin's and the host's. Run it only on a case
// that passes.
func (f *CaseFile) BenchCase(wasmFile string, i int, opts ...Option) (testing.BenchmarkResult, error) {
	c := &f.Cases[i]
	var loadErr error
	var result testing.BenchmarkResult
	failures := Capture(func(t TB) {
		p := Load(t, wasmFile, f.options(c, append(opts, Timeout(0), noTrace()))...)
		bt := &benchTB{TB: t}
		p.t = bt
		result = testing.Benchmark(func(b *testing.B) {
			bt.b = b
			b.ReportAllocs()
			for b.Loop() {
				s, _ := f.play(p, c)
				s.finish(false)
				if bt.failed != "" {
					b.Fatalf("%s", bt.failed)
				}
			}
		})
		if bt.failed != "" {
			loadErr = errors.New(bt.failed)
		}
	})
	if len(failures) > 0 {
		return result, errors.New(failures[0])
	}
	return result, loadErr
}

// benchTB records the first failure of a benchmark iteration.
type benchTB struct {
	TB
	b      *testing.B
	failed string
}

func (b *benchTB) Errorf(format string, args ...any) {
	if b.failed == "" {
		b.failed = fmt.Sprintf(format, args...)
	}
}

func (b *benchTB) Fatalf(format string, args ...any) {
	b.Errorf(format, args...)
	b.b.FailNow()
}
