package stats

import (
	"regexp"
	"strings"
	"testing"
)

// TestPrometheusStatsTags renders single stats under a stats_config
// (TagConfig): Envoy's semantics are that group 1 of a regex is cut from
// the name and group 2 (or group 1 alone) is the value, extraction runs
// on "wasmcustom.<name>" for plugin metrics, fixed values label every
// series, and a user tag named like a default replaces it.
func TestPrometheusStatsTags(t *testing.T) {
	routeTag := TagSpecifier{Name: "plugin_route", Regex: regexp.MustCompile(`^wasmcustom\.myplugin\.requests\.((.+?)\.)`)}
	methodTag := TagSpecifier{Name: "method", Regex: regexp.MustCompile(`(_(get|post))$`)}
	tests := []struct {
		name string
		cfg  TagConfig
		stat NamedValue
		want string
	}{
		{
			name: "custom counter: regex with two groups",
			cfg:  TagConfig{Specifiers: []TagSpecifier{routeTag}},
			stat: NamedValue{Name: "myplugin.requests.checkout.total", Kind: Custom, Value: 3},
			want: "# TYPE myplugin_requests_total counter\n" +
				`myplugin_requests_total{plugin_route="checkout"} 3` + "\n\n",
		},
		{
			name: "one group is cut and is the value",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "method", Regex: regexp.MustCompile(`_(get|post)$`)}}},
			stat: NamedValue{Name: "myplugin.calls_post", Kind: Custom, Value: 2},
			want: "# TYPE myplugin_calls_ counter\n" +
				`myplugin_calls_{method="post"} 2` + "\n\n",
		},
		{
			name: "group 1 cut, group 2 the value",
			cfg:  TagConfig{Specifiers: []TagSpecifier{methodTag}},
			stat: NamedValue{Name: "myplugin.calls_post", Kind: Custom, Value: 2},
			want: "# TYPE myplugin_calls counter\n" +
				`myplugin_calls{method="post"} 2` + "\n\n",
		},
		{
			name: "two user tags on one name, cuts applied together",
			cfg:  TagConfig{Specifiers: []TagSpecifier{routeTag, methodTag}},
			stat: NamedValue{Name: "myplugin.requests.cart.calls_get", Kind: Custom, Value: 1},
			want: "# TYPE myplugin_requests_calls counter\n" +
				`myplugin_requests_calls{plugin_route="cart",method="get"} 1` + "\n\n",
		},
		{
			name: "no match leaves the name alone",
			cfg:  TagConfig{Specifiers: []TagSpecifier{routeTag}},
			stat: NamedValue{Name: "other.requests.x.total", Kind: Custom, Value: 1},
			want: "# TYPE other_requests_x_total counter\n" +
				"other_requests_x_total{} 1\n\n",
		},
		{
			name: "fixed value labels every series, first",
			cfg:  TagConfig{Specifiers: []TagSpecifier{routeTag, {Name: "deployment", FixedValue: "canary"}}},
			stat: NamedValue{Name: "myplugin.requests.home.total", Kind: Custom, Value: 5},
			want: "# TYPE myplugin_requests_total counter\n" +
				`myplugin_requests_total{deployment="canary",plugin_route="home"} 5` + "\n\n",
		},
		{
			name: "fixed value alone, no extractor matching",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "deployment", FixedValue: "canary"}}},
			stat: NamedValue{Name: "hits", Kind: Custom, Value: 1},
			want: "# TYPE hits counter\n" +
				`hits{deployment="canary"} 1` + "\n\n",
		},
		{
			name: "fixed value on an Envoy stat too",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "deployment", FixedValue: "canary"}}},
			stat: NamedValue{Name: "cluster.backend.upstream_cx_total", Value: 4},
			want: "# TYPE envoy_cluster_upstream_cx_total counter\n" +
				`envoy_cluster_upstream_cx_total{deployment="canary",envoy_cluster_name="backend"} 4` + "\n\n",
		},
		{
			name: "user regex on an Envoy stat",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "wasm_runtime", Regex: regexp.MustCompile(`^wasm\.((envoy\.wasm\.runtime\.\w+)\.)`)}}},
			stat: NamedValue{Name: "wasm.envoy.wasm.runtime.v8.created", Value: 2},
			want: "# TYPE envoy_wasm_created counter\n" +
				`envoy_wasm_created{wasm_runtime="envoy.wasm.runtime.v8"} 2` + "\n\n",
		},
		{
			name: "defaults dropped",
			cfg:  TagConfig{NoDefaultTags: true},
			stat: NamedValue{Name: "cluster.backend.upstream_cx_total", Value: 4},
			want: "# TYPE envoy_cluster_backend_upstream_cx_total counter\n" +
				"envoy_cluster_backend_upstream_cx_total{} 4\n\n",
		},
		{
			name: "a user tag named like a default replaces it",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "envoy.cluster_name", Regex: regexp.MustCompile(`^cluster\.((\w+)_pool\.)`)}}},
			stat: NamedValue{Name: "cluster.web_pool.upstream_cx_total", Value: 1},
			want: "# TYPE envoy_cluster_upstream_cx_total counter\n" +
				`envoy_cluster_upstream_cx_total{envoy_cluster_name="web"} 1` + "\n\n",
		},
		{
			name: "a default extractor applies to a plugin metric, as in Envoy",
			stat: NamedValue{Name: "myplugin.backend_rq_503", Kind: Custom, Value: 1},
			want: "# TYPE myplugin_backend_rq counter\n" +
				`myplugin_backend_rq{envoy_response_code="503"} 1` + "\n\n",
		},
		{
			name: "a cut that takes the namespace makes an Envoy-style name",
			cfg:  TagConfig{Specifiers: []TagSpecifier{{Name: "ns", Regex: regexp.MustCompile(`^((wasmcustom)\.)`)}}},
			stat: NamedValue{Name: "hits", Kind: Custom, Value: 1},
			want: "# TYPE envoy_hits counter\n" +
				`envoy_hits{ns="wasmcustom"} 1` + "\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New()
			st.SetTagConfig(tt.cfg)
			if tt.stat.Kind == Custom {
				st.CustomCounter(tt.stat.Name).Add(uint64(tt.stat.Value))
			} else {
				st.Counter(tt.stat.Name).Add(uint64(tt.stat.Value))
			}
			var b strings.Builder
			// Filter and usedOnly must keep the tag config.
			if err := st.Snapshot().Filter(nil).WritePrometheus(&b, true); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestStatsTagsKeepNames checks that tags change only the Prometheus
// rendering: /stats text keeps the full names.
func TestStatsTagsKeepNames(t *testing.T) {
	st := New()
	st.SetTagConfig(TagConfig{Specifiers: []TagSpecifier{{Name: "route", Regex: regexp.MustCompile(`^wasmcustom\.p\.((\w+)\.)`)}}})
	st.CustomGauge("p.cart.inflight").Set(2)
	var b strings.Builder
	if err := st.Snapshot().WriteText(&b, nil, false); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "p.cart.inflight: 2\n"; got != want {
		t.Errorf("text output %q, want %q", got, want)
	}
	b.Reset()
	if err := st.Snapshot().WritePrometheus(&b, false); err != nil {
		t.Fatal(err)
	}
	if want := `p_inflight{route="cart"} 2`; !strings.Contains(b.String(), want) {
		t.Errorf("prometheus output\n%s\nwant a line %s", b.String(), want)
	}
}
