package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// limitsConfig is a config with one listener whose route is route (a
// YAML flow mapping), with routeConfig added to its route_config, http
// before the router, and bootstrap added at the top level.
func limitsConfig(route, routeConfig, http, bootstrap string) string {
	return `
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
                  ` + routeConfig + `
                  virtual_hosts: [{name: all, domains: ["*"], routes: [` + route + `]}]
                http_filters:
                  ` + http + `
                  - name: envoy.filters.http.router
` + bootstrap
}

const (
	limitsHCMPath   = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	limitsRoutePath = limitsHCMPath + ".route_config.virtual_hosts[0].routes[0]"
)

func directResponse(body int) string {
	return fmt.Sprintf(`{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: %q}}}`, strings.Repeat("b", body))
}

func regexRoute(re string) string {
	return fmt.Sprintf(`{match: {safe_regex: {regex: %q}}, direct_response: {status: 200}}`, re)
}

func headerRegexRoute(re string) string {
	return fmt.Sprintf(`{match: {prefix: "/", headers: [{name: x-v, string_match: {safe_regex: {regex: %q}}}]}, direct_response: {status: 200}}`, re)
}

func googleRE2Route(re string, max int) string {
	return fmt.Sprintf(`{match: {safe_regex: {regex: %q, google_re2: {max_program_size: %d}}}, direct_response: {status: 200}}`, re, max)
}

const okRoute = `{match: {prefix: "/"}, direct_response: {status: 200}}`

func tagRegex(re string) string {
	return fmt.Sprintf("stats_config: {stats_tags: [{tag_name: cluster_name, regex: %q}]}\n", re)
}

// wasmWithConfiguration is an HTTP Wasm filter whose plugin
// configuration is a StringValue of n bytes.
func wasmWithConfiguration(n int) string {
	return fmt.Sprintf(`- name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: %s}
                        vm_config: {code: {local: {filename: plugin.wasm}}}`, strings.Repeat("c", n))
}

// metadataList is a JSON config whose node metadata holds a list of n
// numbers: 4 values (three objects and the list) plus n.
func metadataList(n int) string {
	return `{"node": {"metadata": {"x": [` + strings.TrimSuffix(strings.Repeat("1,", n), ",") + `]}}}`
}

// nested is a config whose node metadata holds lists nested depth deep
// (the top-level object, node and metadata are levels 1 to 3).
func nested(depth int, yaml bool) string {
	lists := depth - 3
	if yaml {
		return "node:\n  metadata:\n    x: " + strings.Repeat("[", lists) + strings.Repeat("]", lists) + "\n"
	}
	return `{"node": {"metadata": {"x": ` + strings.Repeat("[", lists) + strings.Repeat("]", lists) + `}}}`
}

func nestedPath(depth int) string {
	return "node.metadata.x" + strings.Repeat("[0]", depth-4)
}

// aliased is a YAML config whose node metadata holds an anchored list
// of n numbers and a list of copies aliases of it.
func aliased(n, copies int) string {
	return "node:\n  metadata:\n    base: &base [" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]\n" +
		"    copies: [" + strings.TrimSuffix(strings.Repeat("*base,", copies), ",") + "]\n"
}

// aliasedBytes anchors a string of n bytes and aliases it copies times.
func aliasedBytes(n, copies int) string {
	return "node:\n  metadata:\n    base: &big " + strings.Repeat("s", n) + "\n" +
		"    copies: [" + strings.TrimSuffix(strings.Repeat("*big,", copies), ",") + "]\n"
}

// billionLaughs is the classic: nine levels of nine aliases each.
func billionLaughs() string {
	s := "node:\n  metadata:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		s += "    " + n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", ") + "]\n"
		prev = n
	}
	return s
}

// padded is minimal grown to exactly size bytes with trailing blank
// lines.
func padded(size int) string {
	return minimal + strings.Repeat("\n", size-len(minimal))
}

// heavyLimitCases move tens of MB through the loader: a minute each
// under -race, which checks nothing more in this single-goroutine code,
// so they run without it only.
var heavyLimitCases = map[string]bool{
	"plugin configuration at its limit":        true,
	"plugin configuration over its limit":      true,
	"config at the size limit":                 true,
	"config over the size limit":               true,
	"values over the limit":                    true,
	"values at the limit through YAML aliases": true,
}

// TestLimits: every limit on what a config can make the proxy allocate
// or compute (limits.go) refuses a config over it with an error naming
// the field, and loads one just at it.
func TestLimits(t *testing.T) {
	mib16 := MaxPluginConfigurationBytes
	tests := []struct {
		name   string
		config func() string
		want   string // "" = loads
	}{
		{"direct response body at Envoy's default", func() string { return limitsConfig(directResponse(4096), "", "", "") }, ""},
		{"direct response body over Envoy's default", func() string { return limitsConfig(directResponse(4097), "", "", "") },
			limitsRoutePath + ".direct_response.body: response body size is 4097 bytes; maximum is 4096"},
		{"direct response body at a raised limit", func() string {
			return limitsConfig(directResponse(100000), "max_direct_response_body_size_bytes: 100000", "", "")
		}, ""},
		{"direct response body over a raised limit", func() string {
			return limitsConfig(directResponse(100001), "max_direct_response_body_size_bytes: 100000", "", "")
		}, limitsRoutePath + ".direct_response.body: response body size is 100001 bytes; maximum is 100000"},
		{"direct response body over a lowered limit", func() string {
			return limitsConfig(directResponse(11), "max_direct_response_body_size_bytes: 10", "", "")
		}, limitsRoutePath + ".direct_response.body: response body size is 11 bytes; maximum is 10"},

		{"route regex at the program size limit", func() string { return limitsConfig(regexRoute("a{98}"), "", "", "") }, ""},
		{"route regex over the program size limit", func() string { return limitsConfig(regexRoute("a{99}"), "", "", "") },
			limitsRoutePath + ".match.safe_regex.regex: regex 'a{99}' RE2 program size of 101 > max program size of 100 set for the error level threshold"},
		{"header regex at the program size limit", func() string { return limitsConfig(headerRegexRoute("a{98}"), "", "", "") }, ""},
		{"header regex over the program size limit", func() string { return limitsConfig(headerRegexRoute("a{99}"), "", "", "") },
			limitsRoutePath + ".match.headers[0].string_match.safe_regex.regex: regex 'a{99}' RE2 program size of 101 > max program size of 100 set for the error level threshold"},
		{"regex at google_re2.max_program_size", func() string { return limitsConfig(googleRE2Route("a{8}", 10), "", "", "") }, ""},
		{"regex over google_re2.max_program_size", func() string { return limitsConfig(googleRE2Route("a{9}", 10), "", "", "") },
			limitsRoutePath + ".match.safe_regex.regex: regex 'a{9}' RE2 program size of 11 > max program size of 10 (google_re2.max_program_size)"},
		{"google_re2.max_program_size cannot raise the limit", func() string { return limitsConfig(googleRE2Route("a{99}", 1000), "", "", "") },
			limitsRoutePath + ".match.safe_regex.regex: regex 'a{99}' RE2 program size of 101 > max program size of 100 set for the error level threshold"},
		{"stats tag regex at its limit", func() string { return limitsConfig(okRoute, "", "", tagRegex(`^cluster\.((a{500})b{484}\.)`)) }, ""},
		{"stats tag regex over its limit", func() string { return limitsConfig(okRoute, "", "", tagRegex(`^cluster\.((a{500})b{485}\.)`)) },
			`stats_config.stats_tags[0].regex: regex '^cluster\.((a{500})b{485}\.)' RE2 program size of 1001 > max program size of 1000 (the limit on stats tag regexes)`},

		{"plugin configuration at its limit", func() string { return limitsConfig(okRoute, "", wasmWithConfiguration(mib16), "") }, ""},
		{"plugin configuration over its limit", func() string { return limitsConfig(okRoute, "", wasmWithConfiguration(mib16+1), "") },
			limitsHCMPath + ".http_filters[0].typed_config.config.configuration: the configuration is 16777217 bytes as the plugin reads it; maximum is 16777216 (16 MiB)"},

		{"config at the size limit", func() string { return padded(MaxConfigBytes) }, ""},
		{"config over the size limit", func() string { return padded(MaxConfigBytes + 1) },
			"the config is 67108865 bytes; maximum is 67108864 (64 MiB)"},

		{"values over the limit", func() string { return metadataList(MaxConfigValues - 3) },
			fmt.Sprintf("node.metadata.x[%d]: the config has over 1000000 values (objects, lists, scalars); maximum is 1000000", MaxConfigValues-4)},
		// 4 values (the three objects and copies) + 6 lists of 166,666
		// values (166,665 numbers and the list) = 1,000,000, with YAML
		// aliases and after their expansion alike. (More aliases of a
		// smaller list would break the YAML parser's own aliasing ratio.)
		{"values at the limit through YAML aliases", func() string { return aliased(166665, 5) }, ""},
		{"values over the limit through YAML aliases", func() string { return aliased(166665, 6) },
			"node.metadata.copies[5]: the config has over 1000000 values (objects, lists, scalars) with its YAML aliases expanded (alias *base at line 4)"},
		{"bytes over the limit through YAML aliases", func() string { return aliasedBytes(1<<20, 64) },
			"node.metadata.copies[62]: the config is over 67108864 bytes (64 MiB) with its YAML aliases expanded (alias *big at line 4)"},
		{"billion laughs", billionLaughs,
			"node.metadata.g[0]: the config has over 1000000 values (objects, lists, scalars) with its YAML aliases expanded (alias *f at line 9)"},

		{"JSON nested at the depth limit", func() string { return nested(MaxNestingDepth, false) }, ""},
		{"JSON nested over the depth limit", func() string { return nested(MaxNestingDepth+1, false) },
			nestedPath(MaxNestingDepth+1) + ": objects and lists nested 101 deep; maximum is 100"},
		{"YAML nested at the depth limit", func() string { return nested(MaxNestingDepth, true) }, ""},
		{"YAML nested over the depth limit", func() string { return nested(MaxNestingDepth+1, true) },
			nestedPath(MaxNestingDepth+1) + ": objects and lists nested 101 deep; maximum is 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if heavyLimitCases[tt.name] && raceDetector {
				t.Skip("tens of MB: run without -race")
			}
			_, err := Parse([]byte(tt.config()), "envoy.yaml")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("a config at the limit does not load: %v", err)
			case tt.want != "" && err == nil:
				t.Fatal("a config over the limit loaded")
			case tt.want != "" && err.Error() != "envoy.yaml: "+tt.want:
				t.Errorf("error\n got %.600s\nwant envoy.yaml: %s", err, tt.want)
			}
		})
	}
}

// TestLoadRefusesHugeFileUnread: Load stops reading a file at the limit
// and names its real size.
func TestLoadRefusesHugeFileUnread(t *testing.T) {
	if raceDetector {
		t.Skip("reads 64 MiB: run without -race")
	}
	file := filepath.Join(t.TempDir(), "envoy.yaml")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(minimal); err != nil {
		t.Fatal(err)
	}
	// A sparse file: 1 GiB that takes no disk.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Load(file)
	if want := file + ": the config is 1073741824 bytes; maximum is 67108864 (64 MiB)"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}
