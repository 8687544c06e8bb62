package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestYAMLScalarsTypedAsEnvoy pins how one scalar is typed as a value and
// as a key, the way Envoy's parseYamlNode (on yaml-cpp) types it.
func TestYAMLScalarsTypedAsEnvoy(t *testing.T) {
	for _, tc := range []struct {
		text string
		want string // the value as JSON
	}{
		// yaml-cpp's booleans: the word in lower, upper or capitalized case.
		{"n", `false`}, {"N", `false`}, {"y", `true`}, {"Y", `true`},
		{"yes", `true`}, {"No", `false`}, {"ON", `true`}, {"off", `false`},
		{"true", `true`}, {"False", `false`}, {"TRUE", `true`},
		{"tRUE", `"tRUE"`}, {"oN", `"oN"`}, {"nO", `"nO"`}, {"yEs", `"yEs"`},
		{"t", `"t"`}, {"enabled", `"enabled"`},
		// Quoted and block scalars, and the "!" tag, are strings.
		{`"n"`, `"n"`}, {`'on'`, `"on"`}, {`"42"`, `"42"`}, {"! 42", `"42"`}, {"! yes", `"yes"`}, {"!  ~", `"~"`},
		{"|-\n    on", `"on"`},
		// A tag other than the bare "!" does not make a string in yaml-cpp.
		{"!!str 42", `42`},
		// Nulls.
		{"~", `null`}, {"null", `null`}, {"Null", `null`}, {"NULL", `null`}, {"", `null`},
		{"nULL", `"nULL"`},
		// Integers as C++ streams read them with the base detected.
		{"42", `42`}, {"+42", `42`}, {"-42", `-42`}, {"0", `0`}, {"-0", `0`},
		{"0x10", `16`}, {"0X1f", `31`}, {"-0x10", `-16`}, {"010", `8`}, {"0755", `493`},
		{"2147483647", `2147483647`}, {"-2147483648", `-2147483648`},
		// Outside int32: the decimal text, which proto JSON reads into 64-bit fields.
		{"2147483648", `"2147483648"`}, {"0x100000000", `"4294967296"`},
		{"-9223372036854775808", `"-9223372036854775808"`},
		// Doubles.
		{"1.5", `1.5`}, {".5", `0.5`}, {"1.", `1`}, {"1e3", `1000`}, {"-2.5E-1", `-0.25`},
		{"09", `9`}, // not octal, so read as a decimal double
		{"9223372036854775808", `9.223372036854776e+18`}, // over int64: a double
		{".inf", `"Infinity"`}, {"-.Inf", `"-Infinity"`}, {".NaN", `"NaN"`},
		// Everything else stays as written.
		{"1_000", `"1_000"`}, {"0b101", `"0b101"`}, {"0o17", `"0o17"`}, {"0x", `"0x"`},
		{"1e400", `"1e400"`}, {"1e", `"1e"`}, {"inf", `"inf"`}, {"nan", `"nan"`},
		{"0x1p3", `"0x1p3"`}, {"2024-01-02", `"2024-01-02"`}, {"12:30", `"12:30"`},
		{"1.2.3", `"1.2.3"`}, {"+", `"+"`}, {"-x", `"-x"`},
	} {
		t.Run("value "+tc.text, func(t *testing.T) {
			tree, err := yamlTree([]byte("v: " + tc.text + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(tree.(map[string]any)["v"])
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("v: %s is %s; want %s", tc.text, got, tc.want)
			}
		})
	}
	// Keys are their text, verbatim, whatever their value would be.
	for _, tc := range []struct{ text, want string }{
		{"n", "n"}, {"y", "y"}, {"yes", "yes"}, {"no", "no"}, {"on", "on"}, {"off", "off"},
		{"true", "true"}, {"False", "False"}, {"1", "1"}, {"0x10", "0x10"}, {"010", "010"},
		{"1.50", "1.50"}, {".inf", ".inf"}, {`"quoted"`, "quoted"}, {"~", "null"}, {"null", "null"},
		{"2024-01-02", "2024-01-02"},
	} {
		t.Run("key "+tc.text, func(t *testing.T) {
			tree, err := yamlTree([]byte(tc.text + ": x\n"))
			if err != nil {
				t.Fatal(err)
			}
			m := tree.(map[string]any)
			if _, ok := m[tc.want]; !ok || len(m) != 1 {
				t.Errorf("key %s read as %v; want %q", tc.text, m, tc.want)
			}
		})
	}
}

// TestYAMLStructure covers what surrounds the scalars: !ignore keys,
// anchors and merges, duplicate keys, bad keys, JSON input.
func TestYAMLStructure(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want, err string
	}{
		{"ignore key keeps its anchors usable",
			"!ignore defs:\n  - &addr {address: 127.0.0.1, port_value: 9901}\na: *addr\n",
			`{"a":{"address":"127.0.0.1","port_value":9901}}`, ""},
		{"merge: own keys win, earlier merges win",
			"base: &b {x: 1, y: 2}\nmore: &m {y: 3, z: 4}\nc:\n  <<: [*b, *m]\n  x: 0\n",
			`{"base":{"x":1,"y":2},"c":{"x":0,"y":2,"z":4},"more":{"y":3,"z":4}}`, ""},
		{"bare ! tag after non-ASCII text", "é: ! 5\nlist: [! on, on]\n", `{"list":["on",true],"é":"5"}`, ""},
		{"quoted << is a key", "\"<<\": 1\n", `{"\u003c\u003c":1}`, ""},
		{"JSON input", `{"a": [1, 1.5, "n", true, null, 4294967296], "n": {}}`,
			`{"a":[1,1.5,"n",true,null,"4294967296"],"n":{}}`, ""},
		{"duplicate key", "a: 1\nb: 2\na: 3\n", "", `line 3: key "a" already set in map`},
		{"duplicate after quoting", "on: 1\n'on': 2\n", "", `line 2: key "on" already set in map`},
		{"mapping as key", "? {a: 1}\n: 2\n", "", "line 1: a mapping key must be a scalar, not a list or mapping"},
		{"syntax error keeps its line", "a:\n  b: 1\n   c: 2\n", "", "line 3: mapping values are not allowed in this context"},
		{"merge of a scalar", "a:\n  <<: 1\n", "", "line 2: a << merge takes a mapping or a list of mappings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := yamlTree([]byte(tc.doc))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(tree)
			if string(got) != tc.want {
				t.Errorf("got %s; want %s", got, tc.want)
			}
		})
	}
}

// TestYAMLKeysInConfig loads whole configs to show what a user sees: a
// plugin's Struct configuration, metadata keys and header names written
// as bare `n`, `on`, `yes` keep their text; the same words as values are
// booleans, as in Envoy, so a string field given one is refused.
func TestYAMLKeysInConfig(t *testing.T) {
	const tmpl = `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    metadata:
      filter_metadata:
        team:
          n: 1
          on: off
          yes: "yes"
          0x10: 010
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              request_headers_to_add:
              - header: {key: HEADER_KEY, value: HEADER_VALUE}
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                configuration:
                  "@type": type.googleapis.com/google.protobuf.Struct
                  value:
                    n: 3
                    y: [yes, no, "on", 0x1F, 1.25, 5000000000]
                vm_config: {runtime: envoy.wasm.runtime.wasmtime, code: {local: {filename: p.wasm}}}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]
`
	for _, tc := range []struct {
		name, key, value string
		err              string
	}{
		{"bare words as values are refused in a string field, as in Envoy", "x-n", "on",
			"header.value"},
		{"quoted words are strings", "x-n", `"on"`, ""},
		{"numbers in a string field are refused, as in Envoy", "x-n", "1", "header.value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.NewReplacer("HEADER_KEY", tc.key, "HEADER_VALUE", tc.value).Replace(tmpl)
			b, err := Parse([]byte(doc), "envoy.yaml")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l := b.Listeners[0]
			md, _ := json.Marshal(l.Metadata)
			if want := `{"team":{"0x10":8,"n":1,"on":false,"yes":"yes"}}`; string(md) != want {
				t.Errorf("listener metadata %s; want %s", md, want)
			}
			plugin := l.FilterChains[0].HTTP.Filters[0].Wasm
			if want := `{"n":3,"y":[true,false,"on",31,1.25,"5000000000"]}`; string(plugin.PluginConfiguration) != want {
				t.Errorf("plugin configuration %s; want %s", plugin.PluginConfiguration, want)
			}
			if !strings.Contains(string(b.RawJSON), `"key":"x-n","value":"on"`) {
				t.Errorf("header not kept as written in the dump: %s", b.RawJSON)
			}
		})
	}
	// The header name itself: a bare `n` is a boolean (refused), quoted it is a name.
	for _, key := range []string{"n", "yes"} {
		doc := strings.NewReplacer("HEADER_KEY", key, "HEADER_VALUE", "v").Replace(tmpl)
		if _, err := Parse([]byte(doc), "envoy.yaml"); err == nil || !strings.Contains(err.Error(), "header.key") {
			t.Errorf("key: %s: error %v; want one naming header.key", key, err)
		}
		doc = strings.NewReplacer("HEADER_KEY", `"`+key+`"`, "HEADER_VALUE", "v").Replace(tmpl)
		if _, err := Parse([]byte(doc), "envoy.yaml"); err != nil {
			t.Errorf("key: %q: %v", key, err)
		}
	}
}
