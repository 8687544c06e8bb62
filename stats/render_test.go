package stats

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
)

// small is a histogram with bounds {1, 10} holding samples 0.5, 5 and 11.
var small = HistogramSnapshot{Bounds: []float64{1, 10}, Buckets: []uint64{1, 2, 3}, Count: 3, Sum: 16.5}

var empty = HistogramSnapshot{Bounds: []float64{1, 10}, Buckets: []uint64{0, 0, 0}}

func sampleSnapshot() Snapshot {
	return Snapshot{
		Counters: []NamedValue{
			{Name: "cluster.a.upstream_rq_total", Value: 3},
			{Name: "http.x.rq_zero", Value: 0},
		},
		Gauges: []NamedValue{
			{Name: "server.live", Value: 1},
		},
		Histograms: []NamedHistogram{
			{Name: "h", HistogramSnapshot: small},
			{Name: "h.empty", HistogramSnapshot: empty},
		},
	}
}

const smallSummary = "P0(1,1) P25(1,1) P50(10,10) P75(10,10) P90(10,10) P95(10,10) P99(10,10) P99.5(10,10) P99.9(10,10) P100(10,10)"

func TestWriteText(t *testing.T) {
	tests := []struct {
		name     string
		filter   string
		usedOnly bool
		want     string
	}{
		{
			name: "all",
			want: "cluster.a.upstream_rq_total: 3\n" +
				"http.x.rq_zero: 0\n" +
				"server.live: 1\n" +
				"h: " + smallSummary + "\n" +
				"h.empty: No recorded values\n",
		},
		{
			name:   "filter",
			filter: `^cluster\.`,
			want:   "cluster.a.upstream_rq_total: 3\n",
		},
		{
			name:   "filter is a search, not a full match",
			filter: `live`,
			want:   "server.live: 1\n",
		},
		{
			name:     "used only",
			usedOnly: true,
			want: "cluster.a.upstream_rq_total: 3\n" +
				"server.live: 1\n" +
				"h: " + smallSummary + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var re *regexp.Regexp
			if tt.filter != "" {
				re = regexp.MustCompile(tt.filter)
			}
			var b strings.Builder
			if err := sampleSnapshot().WriteText(&b, re, tt.usedOnly); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name     string
		filter   string
		usedOnly bool
		want     string
	}{
		{
			name:   "numbers only, no histograms entry",
			filter: `^(cluster|server)\.`,
			want:   `{"stats":[{"name":"cluster.a.upstream_rq_total","value":3},{"name":"server.live","value":1}]}`,
		},
		{
			name:   "histograms, empty ones as null",
			filter: `^h($|\.)`,
			want: `{"stats":[{"histograms":{"supported_quantiles":[0,25,50,75,90,95,99,99.5,99.9,100],"computed_quantiles":[` +
				`{"name":"h","values":[{"cumulative":1,"interval":1},{"cumulative":1,"interval":1},` +
				strings.Repeat(`{"cumulative":10,"interval":10},`, 7) + `{"cumulative":10,"interval":10}]},` +
				`{"name":"h.empty","values":[` + strings.Repeat(`{"cumulative":null,"interval":null},`, 9) + `{"cumulative":null,"interval":null}]}]}}]}`,
		},
		{
			name:     "empty selection",
			filter:   `nothing`,
			usedOnly: true,
			want:     `{"stats":[]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := sampleSnapshot().WriteJSON(&b, regexp.MustCompile(tt.filter), tt.usedOnly); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid([]byte(b.String())) {
				t.Error("output is not valid JSON")
			}
		})
	}
}

func TestWritePrometheusSingleStat(t *testing.T) {
	counter := func(name string, kind Kind, v int64) Snapshot {
		return Snapshot{Counters: []NamedValue{{Name: name, Kind: kind, Value: v}}}
	}
	gauge := func(name string, kind Kind, v int64) Snapshot {
		return Snapshot{Gauges: []NamedValue{{Name: name, Kind: kind, Value: v}}}
	}
	tests := []struct {
		name string
		snap Snapshot
		want string
	}{
		{
			name: "http response code class",
			snap: counter("http.ingress_http.downstream_rq_2xx", Builtin, 5),
			want: "# TYPE envoy_http_downstream_rq_xx counter\n" +
				`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"} 5` + "\n\n",
		},
		{
			name: "http prefix",
			snap: counter("http.ingress_http.downstream_rq_total", Builtin, 7),
			want: "# TYPE envoy_http_downstream_rq_total counter\n" +
				`envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress_http"} 7` + "\n\n",
		},
		{
			name: "cluster response code",
			snap: counter("cluster.backend.upstream_rq_200", Builtin, 4),
			want: "# TYPE envoy_cluster_upstream_rq counter\n" +
				`envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="backend"} 4` + "\n\n",
		},
		{
			name: "cluster gauge",
			snap: gauge("cluster.backend.upstream_cx_active", Builtin, 2),
			want: "# TYPE envoy_cluster_upstream_cx_active gauge\n" +
				`envoy_cluster_upstream_cx_active{envoy_cluster_name="backend"} 2` + "\n\n",
		},
		{
			name: "listener address",
			snap: counter("listener.0.0.0.0_10000.downstream_cx_total", Builtin, 9),
			want: "# TYPE envoy_listener_downstream_cx_total counter\n" +
				`envoy_listener_downstream_cx_total{envoy_listener_address="0.0.0.0_10000"} 9` + "\n\n",
		},
		{
			name: "named listener is not an address",
			snap: counter("listener.admin.downstream_cx_total", Builtin, 1),
			want: "# TYPE envoy_listener_admin_downstream_cx_total counter\n" +
				"envoy_listener_admin_downstream_cx_total{} 1\n\n",
		},
		{
			name: "listener-scoped http stat gets three tags",
			snap: counter("listener.[__1]_80.http.ingress.downstream_rq_5xx", Builtin, 1),
			want: "# TYPE envoy_listener_http_downstream_rq_xx counter\n" +
				`envoy_listener_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="ingress",envoy_listener_address="[__1]_80"} 1` + "\n\n",
		},
		{
			name: "other names are flattened",
			snap: gauge("wasm.envoy.wasm.runtime.v8.active", Builtin, 3),
			want: "# TYPE envoy_wasm_envoy_wasm_runtime_v8_active gauge\n" +
				"envoy_wasm_envoy_wasm_runtime_v8_active{} 3\n\n",
		},
		{
			name: "odd characters sanitized, colons too",
			snap: counter("cluster.outbound|80||svc.ns:x.upstream_cx_total", Builtin, 1),
			want: "# TYPE envoy_cluster_ns_x_upstream_cx_total counter\n" +
				`envoy_cluster_ns_x_upstream_cx_total{envoy_cluster_name="outbound|80||svc"} 1` + "\n\n",
		},
		{
			name: "custom metric has no envoy_ prefix and no tags",
			snap: counter("my_plugin.http.requests_2xx", Custom, 11),
			want: "# TYPE my_plugin_http_requests_2xx counter\n" +
				"my_plugin_http_requests_2xx{} 11\n\n",
		},
		{
			name: "custom metric starting with a digit is left out",
			snap: counter("1st.metric", Custom, 1),
			want: "",
		},
		{
			name: "histogram with tags",
			snap: Snapshot{Histograms: []NamedHistogram{{Name: "cluster.backend.upstream_rq_time", HistogramSnapshot: small}}},
			want: "# TYPE envoy_cluster_upstream_rq_time histogram\n" +
				`envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="1"} 1` + "\n" +
				`envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="10"} 2` + "\n" +
				`envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="+Inf"} 3` + "\n" +
				`envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="backend"} 16.5` + "\n" +
				`envoy_cluster_upstream_rq_time_count{envoy_cluster_name="backend"} 3` + "\n\n",
		},
		{
			name: "custom histogram without tags",
			snap: Snapshot{Histograms: []NamedHistogram{{Name: "latency", Kind: Custom, HistogramSnapshot: HistogramSnapshot{
				Bounds: []float64{0.5, 3600000}, Buckets: []uint64{0, 1, 1}, Count: 1, Sum: 2}}}},
			want: "# TYPE latency histogram\n" +
				`latency_bucket{le="0.5"} 0` + "\n" +
				`latency_bucket{le="3600000"} 1` + "\n" +
				`latency_bucket{le="+Inf"} 1` + "\n" +
				"latency_sum{} 2\n" +
				"latency_count{} 1\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tt.snap.WritePrometheus(&b, false); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWritePrometheusGroupingAndOrder(t *testing.T) {
	st := New()
	st.Counter("http.b.downstream_rq_2xx").Add(1)
	st.Counter("http.a.downstream_rq_5xx").Add(2)
	st.Counter("http.a.downstream_rq_2xx").Add(3)
	st.Counter("http.a.downstream_rq_4xx") // zero: dropped with usedOnly
	st.Gauge("server.live").Set(1)
	st.CustomCounter("plugin_hits").Add(4)

	var b strings.Builder
	if err := st.Snapshot().WritePrometheus(&b, true); err != nil {
		t.Fatal(err)
	}
	want := "# TYPE envoy_http_downstream_rq_xx counter\n" +
		`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="a"} 3` + "\n" +
		`envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="a"} 2` + "\n" +
		`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="b"} 1` + "\n" +
		"\n" +
		"# TYPE plugin_hits counter\n" +
		"plugin_hits{} 4\n" +
		"\n" +
		"# TYPE envoy_server_live gauge\n" +
		"envoy_server_live{} 1\n" +
		"\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPrometheusLabelValueEscaping(t *testing.T) {
	snap := Snapshot{Counters: []NamedValue{{Name: `cluster.a"b\c.upstream_cx_total`, Value: 1}}}
	var b strings.Builder
	if err := snap.WritePrometheus(&b, false); err != nil {
		t.Fatal(err)
	}
	if want := `envoy_cluster_upstream_cx_total{envoy_cluster_name="a\"b\\c"} 1`; !strings.Contains(b.String(), want) {
		t.Errorf("got\n%s\nwant a line %s", b.String(), want)
	}
}

func TestFormatEnvoyDouble(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1, "1"}, {0.5, "0.5"}, {99.5, "99.5"}, {3600000, "3600000"},
		{1e16, "1e+16"}, {1e-5, "1e-05"}, {math.NaN(), "nan"}, {math.Inf(1), "inf"},
	}
	for _, tt := range tests {
		if got := formatEnvoyDouble(tt.in); got != tt.want {
			t.Errorf("formatEnvoyDouble(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilterDoesNotAlias(t *testing.T) {
	s := sampleSnapshot()
	f := s.Filter(nil)
	f.Counters[0].Value = 100
	if s.Counters[0].Value == 100 {
		t.Error("Filter result shares its slice with the original")
	}
}
