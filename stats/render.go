package stats

import (
	"encoding/json"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// This file renders a Snapshot in the three formats of Envoy's admin
// /stats endpoint: text, JSON and Prometheus. The shapes follow Envoy's
// admin handlers (stats_render.cc, prometheus_stats.cc) so that tools
// written against Envoy's output read ours.

// supportedQuantiles are Envoy's histogram quantiles, in the order Envoy
// prints them, as fractions and as the labels of the text format.
var (
	supportedQuantiles = []float64{0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1}
	quantileLabels     = []string{"P0", "P25", "P50", "P75", "P90", "P95", "P99", "P99.5", "P99.9", "P100"}
	// supportedPercentiles is supportedQuantiles×100, for JSON.
	supportedPercentiles = []float64{0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100}
)

// Filter returns the stats whose full dotted name matches re (a search,
// not an anchored match, as Envoy's ?filter=). A nil re keeps everything.
// The result shares no slices with s.
func (s Snapshot) Filter(re *regexp.Regexp) Snapshot {
	keep := func(name string) bool { return re == nil || re.MatchString(name) }
	out := Snapshot{tags: s.tags}
	for _, c := range s.Counters {
		if keep(c.Name) {
			out.Counters = append(out.Counters, c)
		}
	}
	for _, g := range s.Gauges {
		if keep(g.Name) {
			out.Gauges = append(out.Gauges, g)
		}
	}
	for _, h := range s.Histograms {
		if keep(h.Name) {
			out.Histograms = append(out.Histograms, h)
		}
	}
	return out
}

// usedOnly drops the stats that were never written. The store keeps no
// "used" flag, so a counter or gauge counts as used when it is non-zero
// and a histogram when it holds a sample; a gauge set back to 0 is
// therefore dropped, where Envoy would keep it.
func (s Snapshot) usedOnly() Snapshot {
	out := Snapshot{tags: s.tags}
	for _, c := range s.Counters {
		if c.Value != 0 {
			out.Counters = append(out.Counters, c)
		}
	}
	for _, g := range s.Gauges {
		if g.Value != 0 {
			out.Gauges = append(out.Gauges, g)
		}
	}
	for _, h := range s.Histograms {
		if h.Count != 0 {
			out.Histograms = append(out.Histograms, h)
		}
	}
	return out
}

func (s Snapshot) selected(filter *regexp.Regexp, usedOnly bool) Snapshot {
	s = s.Filter(filter)
	if usedOnly {
		s = s.usedOnly()
	}
	return s
}

// numeric is counters and gauges merged and sorted by name, as Envoy
// lists them in /stats.
func (s Snapshot) numeric() []NamedValue {
	all := make([]NamedValue, 0, len(s.Counters)+len(s.Gauges))
	all = append(all, s.Counters...)
	all = append(all, s.Gauges...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	return all
}

func sortedHistograms(hs []NamedHistogram) []NamedHistogram {
	out := append([]NamedHistogram(nil), hs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteText writes Envoy's plain /stats body: one "name: value" line per
// counter and gauge, sorted by name, then one line per histogram, sorted
// by name, either "name: No recorded values" or Envoy's quantile summary
// "name: P0(i,c) P25(i,c) ... P100(i,c)" where i is the interval value and
// c the cumulative one. The store keeps no per-interval data, so i repeats
// c. filter (nil: all) selects by full name as Filter does; usedOnly
// drops the stats never written, which, as the store keeps no "used" flag,
// means counters and gauges at zero and histograms without samples. It
// returns the write error, if any.
func (s Snapshot) WriteText(w io.Writer, filter *regexp.Regexp, usedOnly bool) error {
	s = s.selected(filter, usedOnly)
	var b strings.Builder
	for _, v := range s.numeric() {
		b.WriteString(v.Name)
		b.WriteString(": ")
		b.WriteString(strconv.FormatInt(v.Value, 10))
		b.WriteByte('\n')
	}
	for _, h := range sortedHistograms(s.Histograms) {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(quantileSummary(h.HistogramSnapshot))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func quantileSummary(h HistogramSnapshot) string {
	if h.Count == 0 {
		return "No recorded values"
	}
	parts := make([]string, len(supportedQuantiles))
	for i, q := range supportedQuantiles {
		v := formatEnvoyDouble(h.Quantile(q))
		parts[i] = quantileLabels[i] + "(" + v + "," + v + ")"
	}
	return strings.Join(parts, " ")
}

// formatEnvoyDouble prints a float the way Envoy's fmt "{}" does: the
// shortest form that reads back exactly, fixed-point for ordinary
// magnitudes, "nan"/"inf" for the special values.
func formatEnvoyDouble(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	if a := math.Abs(v); v == 0 || (a >= 1e-4 && a < 1e16) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// jsonStat is one counter or gauge in /stats?format=json.
type jsonStat struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

// jsonQuantile is one computed quantile; null stands for NaN as in Envoy.
type jsonQuantile struct {
	Cumulative *float64 `json:"cumulative"`
	Interval   *float64 `json:"interval"`
}

type jsonHistogram struct {
	Name   string         `json:"name"`
	Values []jsonQuantile `json:"values"`
}

type jsonHistograms struct {
	Histograms struct {
		SupportedQuantiles []float64       `json:"supported_quantiles"`
		ComputedQuantiles  []jsonHistogram `json:"computed_quantiles"`
	} `json:"histograms"`
}

// WriteJSON writes Envoy's /stats?format=json body:
//
//	{"stats":[{"name":"a.b","value":1}, ...,
//	  {"histograms":{"supported_quantiles":[0,25,...,100],
//	    "computed_quantiles":[{"name":"h","values":[{"cumulative":c,"interval":i}, ...]}]}}]}
//
// Counters and gauges come first, merged and sorted by name; the single
// histograms entry is present only when some histogram is selected. A
// quantile that has no value (an empty histogram) is null. As in
// WriteText, the interval value repeats the cumulative one. filter and
// usedOnly select as for WriteText.
func (s Snapshot) WriteJSON(w io.Writer, filter *regexp.Regexp, usedOnly bool) error {
	s = s.selected(filter, usedOnly)
	entries := make([]any, 0, len(s.Counters)+len(s.Gauges)+1)
	for _, v := range s.numeric() {
		entries = append(entries, jsonStat{Name: v.Name, Value: v.Value})
	}
	if len(s.Histograms) > 0 {
		var hs jsonHistograms
		hs.Histograms.SupportedQuantiles = supportedPercentiles
		for _, h := range sortedHistograms(s.Histograms) {
			jh := jsonHistogram{Name: h.Name, Values: make([]jsonQuantile, len(supportedQuantiles))}
			for i, q := range supportedQuantiles {
				if v := h.Quantile(q); !math.IsNaN(v) && !math.IsInf(v, 0) {
					jh.Values[i] = jsonQuantile{Cumulative: &v, Interval: &v}
				}
			}
			hs.Histograms.ComputedQuantiles = append(hs.Histograms.ComputedQuantiles, jh)
		}
		entries = append(entries, hs)
	}
	out, err := json.Marshal(struct {
		Stats []any `json:"stats"`
	}{entries})
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// tagExtractor pulls one Envoy tag out of a stat name. Group 1 of its
// regexp is cut from the name; group 2 is the tag value, or group 1 when
// there is no group 2. This is how Envoy's tag extractors
// (well_known_names.cc, stats_config.stats_tags) work; every extractor
// matches against the original name and all cuts are applied at the end.
type tagExtractor struct {
	tag string
	re  *regexp.Regexp
}

// valueGroup is the submatch holding the tag value.
func (te tagExtractor) valueGroup() int {
	if te.re.NumSubexp() >= 2 {
		return 2
	}
	return 1
}

// tagExtractors are the subset of Envoy's default tag extractors that
// wasmproxy's own stats use, in the order Envoy emits their labels
// (extractors without a fixed name prefix first).
var tagExtractors = []tagExtractor{
	// cluster.x.upstream_rq_200 -> upstream_rq{envoy_response_code="200"}
	{"envoy.response_code", regexp.MustCompile(`_rq(_(\d{3}))$`)},
	// http.p.downstream_rq_2xx -> downstream_rq_xx{envoy_response_code_class="2"}
	{"envoy.response_code_class", regexp.MustCompile(`_rq_((\d))xx$`)},
	// [listener.<addr>.]http.<prefix>.X
	{"envoy.http_conn_manager_prefix", regexp.MustCompile(`^(?:listener\.(?:.*?\.)?)?http\.((.*?)\.)`)},
	// http.<prefix>.rds.<route_config_name>.X (Envoy's "http.*.rds.$.**":
	// the name is one dot-free token)
	{"envoy.rds_route_config", regexp.MustCompile(`^http\.[^.]*\.rds\.(([^.]*)\.)`)},
	// listener.<ip>_<port>.X (IPv4 digits and dots, or IPv6 hex in brackets)
	{"envoy.listener_address", regexp.MustCompile(`^listener\.(((?:[_.0-9]*|[_\[\]a-fA-F0-9]*))\.)`)},
	// cluster.<name>.X (the name ends at the first dot, as in Envoy)
	{"envoy.cluster_name", regexp.MustCompile(`^cluster\.((.*?)\.)`)},
}

type tag struct{ name, value string }

// tagSet is the whole tag extraction: fixed tags first, then the
// extractors in order (Envoy's defaults, then stats_config.stats_tags).
type tagSet struct {
	fixed      []tag
	extractors []tagExtractor
}

// defaultTags is the extraction without a stats_config.
var defaultTags = &tagSet{extractors: tagExtractors}

func newTagSet(c TagConfig) *tagSet {
	ts := &tagSet{}
	named := map[string]bool{}
	for _, sp := range c.Specifiers {
		named[sp.Name] = true
	}
	if !c.NoDefaultTags {
		for _, te := range tagExtractors {
			if !named[te.tag] {
				ts.extractors = append(ts.extractors, te)
			}
		}
	}
	for _, sp := range c.Specifiers {
		if sp.Regex == nil {
			ts.fixed = append(ts.fixed, tag{sp.Name, sp.FixedValue})
			continue
		}
		ts.extractors = append(ts.extractors, tagExtractor{sp.Name, sp.Regex})
	}
	return ts
}

// extractTags splits a stat name into its tag-extracted name and its
// tags, in the order of the set.
func (ts *tagSet) extractTags(name string) (string, []tag) {
	type cut struct{ from, to int }
	var cuts []cut
	tags := append([]tag(nil), ts.fixed...)
	for _, te := range ts.extractors {
		m := te.re.FindStringSubmatchIndex(name)
		g := te.valueGroup()
		if m == nil || m[2] < 0 || m[2*g] < 0 || m[2*g+1] <= m[2*g] {
			continue
		}
		cuts = append(cuts, cut{m[2], m[3]})
		tags = append(tags, tag{te.tag, name[m[2*g]:m[2*g+1]]})
	}
	if len(cuts) == 0 {
		return name, tags
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i].from < cuts[j].from })
	var b strings.Builder
	pos := 0
	for _, c := range cuts {
		if c.from < pos { // overlapping cuts: keep the first
			continue
		}
		b.WriteString(name[pos:c.from])
		pos = c.to
	}
	b.WriteString(name[pos:])
	return b.String(), tags
}

// sanitizePrometheus replaces every character outside [a-zA-Z0-9_] with
// '_', as Envoy does for metric and label names.
func sanitizePrometheus(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// customNamespace is where Envoy keeps plugin-defined metrics
// ("wasmcustom.<name>"); tag extractors see it, Prometheus output strips it.
const customNamespace = "wasmcustom."

// prometheusName maps a stat to its Prometheus metric name and labels.
// Tags are extracted as Envoy does, from the full name; a Custom (plugin)
// metric's full name is "wasmcustom.<name>". A name still in that
// namespace after extraction keeps its own sanitized name without the
// envoy_ prefix, and is dropped (ok false) when that would not be a valid
// metric name; any other gets the envoy_ prefix.
func prometheusName(name string, kind Kind, ts *tagSet) (metric string, tags []tag, ok bool) {
	if ts == nil {
		ts = defaultTags
	}
	if kind == Custom {
		name = customNamespace + name
	}
	extracted, tags := ts.extractTags(name)
	if rest, custom := strings.CutPrefix(extracted, customNamespace); custom {
		m := sanitizePrometheus(rest)
		if m == "" || (m[0] >= '0' && m[0] <= '9') {
			return "", nil, false
		}
		return m, tags, true
	}
	return "envoy_" + sanitizePrometheus(extracted), tags, true
}

var labelValueEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func formatLabels(tags []tag, extra ...tag) string {
	parts := make([]string, 0, len(tags)+len(extra))
	for _, t := range append(append([]tag(nil), tags...), extra...) {
		parts = append(parts, sanitizePrometheus(t.name)+`="`+labelValueEscaper.Replace(t.value)+`"`)
	}
	return strings.Join(parts, ",")
}

// promSeries is one stat ready to print under its metric name.
type promSeries struct {
	stat   string // original name, for ordering inside a group
	labels []tag
	value  int64
	hist   *HistogramSnapshot
}

type promGroup struct {
	metric string
	series []promSeries
}

func groupSeries(ts *tagSet, add func(func(name string, kind Kind, s promSeries))) []promGroup {
	byName := map[string]*promGroup{}
	add(func(name string, kind Kind, s promSeries) {
		metric, tags, ok := prometheusName(name, kind, ts)
		if !ok {
			return
		}
		s.stat, s.labels = name, tags
		g := byName[metric]
		if g == nil {
			g = &promGroup{metric: metric}
			byName[metric] = g
		}
		g.series = append(g.series, s)
	})
	groups := make([]promGroup, 0, len(byName))
	for _, g := range byName {
		sort.Slice(g.series, func(i, j int) bool { return g.series[i].stat < g.series[j].stat })
		groups = append(groups, *g)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].metric < groups[j].metric })
	return groups
}

// WritePrometheus writes the snapshot in the Prometheus text exposition
// format 0.0.4, shaped like Envoy's /stats/prometheus:
//
//   - Builtin stats are named "envoy_" + the tag-extracted name with every
//     character outside [a-zA-Z0-9_] turned into '_'; Envoy's well-known
//     tags become labels: http.<prefix>.X gives
//     envoy_http_X{envoy_http_conn_manager_prefix="<prefix>"},
//     http.<prefix>.rds.<name>.X gives
//     envoy_http_rds_X{…,envoy_rds_route_config="<name>"},
//     ..._rq_2xx gives ..._rq_xx{envoy_response_code_class="2"},
//     ..._rq_200 gives ..._rq{envoy_response_code="200"},
//     cluster.<name>.X gives envoy_cluster_X{envoy_cluster_name="<name>"},
//     listener.<ip>_<port>.X gives envoy_listener_X{envoy_listener_address="<ip>_<port>"};
//     other names are only flattened.
//   - Custom (plugin) metrics keep their own sanitized name, without the
//     envoy_ prefix; one whose name would start with a digit is left out,
//     as Envoy does.
//   - With a TagConfig (Store.SetTagConfig, from stats_config), its fixed
//     tags label every series, its regexes extract more labels (the first
//     group cut from the name, the second or else the first the value), and
//     Envoy's defaults can be dropped. As in Envoy, extraction runs on the
//     full name, "wasmcustom.<name>" for a plugin metric.
//
// Each metric name is one group: a "# TYPE" line (counter, gauge or
// histogram), its series sorted by stat name, then a blank line; groups
// are sorted by metric name, counters first, then gauges, then
// histograms. Series always carry braces, "{}" when unlabelled, as in
// Envoy. A histogram prints cumulative _bucket lines for each bound and
// le="+Inf", then _sum and _count. usedOnly drops stats never written.
func (s Snapshot) WritePrometheus(w io.Writer, usedOnly bool) error {
	if usedOnly {
		s = s.usedOnly()
	}
	var b strings.Builder
	write := func(groups []promGroup, typ string) {
		for _, g := range groups {
			b.WriteString("# TYPE " + g.metric + " " + typ + "\n")
			for _, sr := range g.series {
				if sr.hist != nil {
					writePromHistogram(&b, g.metric, sr.labels, *sr.hist)
					continue
				}
				b.WriteString(g.metric + "{" + formatLabels(sr.labels) + "} " + strconv.FormatInt(sr.value, 10) + "\n")
			}
			b.WriteByte('\n')
		}
	}
	write(groupSeries(s.tags, func(add func(string, Kind, promSeries)) {
		for _, c := range s.Counters {
			add(c.Name, c.Kind, promSeries{value: c.Value})
		}
	}), "counter")
	write(groupSeries(s.tags, func(add func(string, Kind, promSeries)) {
		for _, g := range s.Gauges {
			add(g.Name, g.Kind, promSeries{value: g.Value})
		}
	}), "gauge")
	write(groupSeries(s.tags, func(add func(string, Kind, promSeries)) {
		for i := range s.Histograms {
			h := &s.Histograms[i]
			add(h.Name, h.Kind, promSeries{hist: &h.HistogramSnapshot})
		}
	}), "histogram")
	_, err := io.WriteString(w, b.String())
	return err
}

func writePromHistogram(b *strings.Builder, metric string, tags []tag, h HistogramSnapshot) {
	labels := formatLabels(tags)
	for i, bound := range h.Bounds {
		var n uint64
		if i < len(h.Buckets) {
			n = h.Buckets[i]
		}
		b.WriteString(metric + "_bucket{" + formatLabels(tags, tag{"le", strconv.FormatFloat(bound, 'f', -1, 64)}) + "} " + strconv.FormatUint(n, 10) + "\n")
	}
	b.WriteString(metric + "_bucket{" + formatLabels(tags, tag{"le", "+Inf"}) + "} " + strconv.FormatUint(h.Count, 10) + "\n")
	b.WriteString(metric + "_sum{" + labels + "} " + formatPromFloat(h.Sum) + "\n")
	b.WriteString(metric + "_count{" + labels + "} " + strconv.FormatUint(h.Count, 10) + "\n")
}

func formatPromFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
