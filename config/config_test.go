package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// minimal is the smallest config that loads: one listener answering
// every request itself.
const minimal = `
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: main
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}]
                http_filters: [{name: envoy.filters.http.router}]
`

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"field", &Error{Source: "a.yaml", Path: "admin.address", Reason: "missing"}, "a.yaml: admin.address: missing"},
		{"not supported", &Error{Source: "a.yaml", Path: "layered_runtime", NotSupported: true}, "a.yaml: not supported yet: layered_runtime"},
		{"not supported with detail", &Error{Source: "a.yaml", Path: "static_resources.clusters[0].type", Reason: "EDS", NotSupported: true}, "a.yaml: not supported yet: static_resources.clusters[0].type: EDS"},
		{"syntax", &Error{Source: "a.yaml", Line: 3, Reason: "bad"}, "a.yaml: line 3: bad"},
		{"no source", &Error{Path: "node", Reason: "bad"}, "node: bad"},
		{"newline folded", &Error{Source: "a.yaml", Reason: "one\ntwo"}, "a.yaml: one two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if got := errors.Is(tt.err, ErrNotSupported); got != tt.err.NotSupported {
				t.Errorf("errors.Is(err, ErrNotSupported) = %v", got)
			}
		})
	}
}

func TestParseErrorKinds(t *testing.T) {
	tests := []struct {
		name         string
		input        string
		wantText     string
		wantLine     int
		notSupported bool
	}{
		{"yaml syntax", "admin:\n  profile_path: /tmp/p\n    access_log_path: /dev/null\n", "line 3: mapping values are not allowed", 3, false},
		{"unsupported", minimal + "hds_config: {api_type: GRPC}\n", "not supported yet: hds_config", 0, true},
		{"validate", minimal + "admin: {address: {socket_address: {port_value: 1}}}\n", "admin.address.socket_address.address: value length must be at least 1 runes", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.input), "cfg.yaml")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want *Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), "cfg.yaml: ") || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got %q, want cfg.yaml: …%s…", err, tt.wantText)
			}
			if ce.Line != tt.wantLine {
				t.Errorf("Line = %d, want %d", ce.Line, tt.wantLine)
			}
			if errors.Is(err, ErrNotSupported) != tt.notSupported {
				t.Errorf("errors.Is(err, ErrNotSupported) = %v, want %v", !tt.notSupported, tt.notSupported)
			}
		})
	}
}

func TestEnumCase(t *testing.T) {
	enum := (&clusterv3.Cluster{}).ProtoReflect().Descriptor().Fields().ByName("lb_policy").Enum()
	tests := []struct {
		in      any
		want    any
		wantErr string
	}{
		{"ROUND_ROBIN", "ROUND_ROBIN", ""},
		{"round_robin", "ROUND_ROBIN", ""},
		{"Least_Request", "LEAST_REQUEST", ""},
		{"roundrobin", nil, `unknown value "roundrobin" for LbPolicy (one of ROUND_ROBIN, LEAST_REQUEST`},
		{true, nil, "expected an enum name (LbPolicy), got boolean true"},
	}
	for _, tt := range tests {
		got, err := normalizeEnum(tt.in, enum, "lb_policy", false)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("normalizeEnum(%v): error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normalizeEnum(%v) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// A string field holding an enum name is not an enum: it stays as written.
func TestEnumCaseOnlyOnEnumFields(t *testing.T) {
	input := strings.Replace(minimal, "stat_prefix: main", "stat_prefix: auto", 1)
	b, err := Parse([]byte(input), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Listeners[0].FilterChains[0].HTTP.StatPrefix; got != "auto" {
		t.Errorf("stat_prefix = %q, want %q", got, "auto")
	}
}

func TestNodeProto(t *testing.T) {
	input := minimal + "node: {id: n1, cluster: c1, metadata: {team: x}}\n"
	b, err := Parse([]byte(input), "")
	if err != nil {
		t.Fatal(err)
	}
	var node corev3.Node
	if err := proto.Unmarshal(b.Node.Proto, &node); err != nil {
		t.Fatal(err)
	}
	if node.GetId() != "n1" || node.GetCluster() != "c1" || node.GetMetadata().GetFields()["team"].GetStringValue() != "x" {
		t.Errorf("Node.Proto decodes to %v", &node)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Source != path {
		t.Errorf("Source = %q, want %q", b.Source, path)
	}
	if !strings.Contains(string(b.RawJSON), `"static_resources"`) {
		t.Errorf("RawJSON does not use proto field names: %s", b.RawJSON)
	}

	missing := filepath.Join(dir, "missing.yaml")
	if _, err := Load(missing); err == nil || !strings.HasPrefix(err.Error(), missing+": ") {
		t.Errorf("Load(missing) = %v, want an error starting with the path", err)
	}
}

func TestRegexpAnchored(t *testing.T) {
	b, err := Parse([]byte(strings.Replace(minimal, `match: {prefix: "/"}`, `match: {safe_regex: {regex: "/a|/ab"}}`, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	re := b.Listeners[0].FilterChains[0].HTTP.Routes.VirtualHosts[0].Routes[0].Match.SafeRegex
	if re.String() != "/a|/ab" {
		t.Errorf("String() = %q, want the regex as written", re.String())
	}
	full := re.Anchored()
	for path, want := range map[string]bool{"/a": true, "/ab": true, "/abc": false, "x/a": false} {
		if got := full.MatchString(path); got != want {
			t.Errorf("Anchored().MatchString(%q) = %v, want %v", path, got, want)
		}
	}
}

// Every allow-list entry must name a real field, or a typo would turn a
// supported field into "not supported yet".
func TestSupportedFieldsExist(t *testing.T) {
	for key, rule := range supportedFields {
		dot := strings.LastIndex(key, ".")
		msgName, fieldName := key[:dot], key[dot+1:]
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(msgName))
		if err != nil {
			t.Errorf("%s: message %s not linked: %v", key, msgName, err)
			continue
		}
		fd := mt.Descriptor().Fields().ByName(protoreflect.Name(fieldName))
		if fd == nil {
			t.Errorf("%s: %s has no field %s", key, msgName, fieldName)
			continue
		}
		if len(rule.payloads) > 0 && (fd.Message() == nil || fd.Message().FullName() != "google.protobuf.Any") &&
			!(fd.IsMap() && fd.MapValue().Message() != nil && fd.MapValue().Message().FullName() == "google.protobuf.Any") {
			t.Errorf("%s: payloads on a field that is not an Any", key)
		}
		for _, p := range rule.payloads {
			if _, err := protoregistry.GlobalTypes.FindMessageByName(p); err != nil {
				t.Errorf("%s: payload %s not linked", key, p)
			}
		}
		if rule.use == inert && rule.note == "" {
			t.Errorf("%s: inert fields need a note saying why they change nothing", key)
		}
	}
}

// docs/compatibility.md lists every allow-listed field in the right
// table: a row starting with the message's short name in backticks that
// names the field in backticks.
func TestCompatibilityDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "compatibility.md"))
	if err != nil {
		t.Fatal(err)
	}
	implementedPart, inertPart, ok := strings.Cut(string(doc), "### Accepted, changing nothing")
	if !ok {
		t.Fatal(`docs/compatibility.md: no "### Accepted, changing nothing" section`)
	}
	for key, rule := range supportedFields {
		dot := strings.LastIndex(key, ".")
		msg := key[strings.LastIndex(key[:dot], ".")+1 : dot]
		field := key[dot+1:]
		part := implementedPart
		if rule.use == inert {
			part = inertPart
		}
		found := false
		for _, line := range strings.Split(part, "\n") {
			if strings.HasPrefix(line, "| `"+msg+"`") && strings.Contains(line, "`"+field+"`") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("docs/compatibility.md: no row for `%s` naming `%s` (%s)", msg, field, map[fieldUse]string{implemented: "implemented", inert: "accepted"}[rule.use])
		}
	}
}

// TestCircuitBreakers: circuit_breakers.thresholds of priority DEFAULT
// are read, unset thresholds keep Envoy's 1024, and what cannot apply
// is refused with its path.
func TestCircuitBreakers(t *testing.T) {
	cluster := func(cb string) string {
		return minimal + `
  clusters:
    - name: web
      connect_timeout: 1s
      load_assignment: {cluster_name: web, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]}
` + cb
	}
	b, err := Parse([]byte(cluster("      circuit_breakers: {thresholds: [{max_connections: 2, max_requests: 0}]}\n")), "cfg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := b.Clusters[0].CircuitBreakers
	if got == nil || *got != (CircuitBreakers{MaxConnections: 2, MaxPendingRequests: 1024, MaxRequests: 0, MaxRetries: 3}) {
		t.Errorf("circuit breakers = %+v", got)
	}
	b, err = Parse([]byte(cluster("      circuit_breakers: {thresholds: [{max_retries: 0}]}\n")), "cfg.yaml")
	if err != nil || *b.Clusters[0].CircuitBreakers != (CircuitBreakers{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 0}) {
		t.Errorf("max_retries 0: %v, %+v", err, b)
	}
	if b, err := Parse([]byte(cluster("")), "cfg.yaml"); err != nil || b.Clusters[0].CircuitBreakers != nil {
		t.Errorf("no circuit_breakers: %v, %+v", err, b)
	}
	for _, tc := range []struct{ cb, want string }{
		{"      circuit_breakers: {thresholds: [{priority: HIGH, max_connections: 2}]}\n",
			"cfg.yaml: not supported yet: static_resources.clusters[0].circuit_breakers.thresholds[0].priority: HIGH (routes have no priority; only DEFAULT thresholds apply)"},
		{"      circuit_breakers: {thresholds: [{max_connections: 2}, {max_requests: 3}]}\n",
			"cfg.yaml: static_resources.clusters[0].circuit_breakers.thresholds[1].priority: DEFAULT thresholds given twice"},
	} {
		_, err := Parse([]byte(cluster(tc.cb)), "cfg.yaml")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v\nwant %s", strings.TrimSpace(tc.cb), err, tc.want)
		}
	}
}
