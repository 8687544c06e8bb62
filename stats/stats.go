// Package stats holds the process's counters, gauges and histograms under
// Envoy-style dotted names ("http.ingress_http.downstream_rq_2xx") and
// renders them as Envoy's /stats text and as Prometheus text.
//
// Lookups by name take a lock; hot paths look a stat up once and keep the
// pointer, after which updates are single atomic operations.
package stats

import (
	"math"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
)

// Counter only goes up.
type Counter struct {
	name string
	v    atomic.Uint64
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value reads the counter.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Name is the stat's full dotted name.
func (c *Counter) Name() string { return c.name }

// Gauge goes up and down.
type Gauge struct {
	name string
	v    atomic.Int64
}

func (g *Gauge) Set(v int64)  { g.v.Store(v) }
func (g *Gauge) Add(d int64)  { g.v.Add(d) }
func (g *Gauge) Value() int64 { return g.v.Load() }
func (g *Gauge) Name() string { return g.name }

// Histogram records samples into Prometheus-style cumulative buckets.
type Histogram struct {
	name    string
	store   *Store
	mu      sync.Mutex
	bounds  []float64
	buckets []uint64 // len(bounds)+1, last is +Inf
	count   uint64
	sum     float64
}

// DefaultBuckets are Envoy's default histogram bucket bounds.
var DefaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Record adds one sample.
func (h *Histogram) Record(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.mu.Lock()
	h.buckets[i]++
	h.count++
	h.sum += v
	h.mu.Unlock()
	if fn := h.store.onSample.Load(); fn != nil {
		(*fn)(h, v)
	}
}

// Name is the stat's full dotted name.
func (h *Histogram) Name() string { return h.name }

// HistogramSnapshot is a consistent copy of a histogram.
type HistogramSnapshot struct {
	Bounds  []float64
	Buckets []uint64 // cumulative per bound; the last entry is the +Inf bucket
	Count   uint64
	Sum     float64
}

// Snapshot copies the histogram with cumulative bucket counts.
func (h *Histogram) Snapshot() HistogramSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HistogramSnapshot{Bounds: h.bounds, Buckets: make([]uint64, len(h.buckets)), Count: h.count, Sum: h.sum}
	var acc uint64
	for i, b := range h.buckets {
		acc += b
		s.Buckets[i] = acc
	}
	return s
}

// Quantile estimates the q-quantile (0..1) from the buckets, NaN if empty.
func (s HistogramSnapshot) Quantile(q float64) float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(s.Count)
	for i, c := range s.Buckets {
		if float64(c) >= rank {
			if i < len(s.Bounds) {
				return s.Bounds[i]
			}
			break
		}
	}
	if len(s.Bounds) == 0 {
		return math.NaN()
	}
	return s.Bounds[len(s.Bounds)-1]
}

// Kind tells apart where a stat came from, for rendering: Envoy's own
// stats get the envoy_ prefix in Prometheus output, plugin-defined
// (custom) ones do not.
type Kind int

const (
	Builtin Kind = iota
	Custom
)

// Store is the set of all stats. The zero value is not usable; use New.
type Store struct {
	mu         sync.RWMutex
	counters   map[string]*Counter
	gauges     map[string]*Gauge
	histograms map[string]*Histogram
	kinds      map[string]Kind
	tags       *tagSet // nil: Envoy's default tag extractors only
	// onSample, when set, sees every histogram sample (statsd sinks send
	// each as a timer, as Envoy's do).
	onSample atomic.Pointer[func(*Histogram, float64)]
}

// OnSample makes fn see every histogram sample from now on, on the
// goroutine that records it (fn must not block); nil stops it.
func (s *Store) OnSample(fn func(h *Histogram, v float64)) {
	if fn == nil {
		s.onSample.Store(nil)
		return
	}
	s.onSample.Store(&fn)
}

// Tag is one tag extracted from a stat name.
type Tag struct{ Name, Value string }

// Tagged splits a stat's full name into its tag-extracted name and its
// tags, by the store's tag configuration (Envoy's default extractors,
// then stats_config.stats_tags) — the name and tags DogStatsD and
// Prometheus see.
func (s *Store) Tagged(name string) (string, []Tag) {
	s.mu.RLock()
	ts := s.tags
	s.mu.RUnlock()
	if ts == nil {
		ts = defaultTags
	}
	extracted, tags := ts.extractTags(name)
	out := make([]Tag, len(tags))
	for i, t := range tags {
		out[i] = Tag{t.name, t.value}
	}
	return extracted, out
}

// Kind reports whether the named stat is Builtin or Custom (a plugin's).
func (s *Store) Kind(name string) Kind {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kinds[name]
}

// TagSpecifier is one user-defined tag (Envoy's stats_config.stats_tags
// entry): exactly one of Regex and FixedValue is used. A regex's first
// capture group is cut from the stat name and its second (without one,
// its first) is the tag value; a fixed value tags every stat.
type TagSpecifier struct {
	Name       string
	Regex      *regexp.Regexp
	FixedValue string
}

// TagConfig is how stat names become Prometheus names and labels.
type TagConfig struct {
	Specifiers []TagSpecifier
	// NoDefaultTags drops Envoy's default extractors (stats_config
	// use_all_default_tags: false). A specifier named like a default
	// replaces that default either way.
	NoDefaultTags bool
}

// SetTagConfig sets the tag extraction applied by WritePrometheus to
// snapshots taken afterwards. Stat names in the store are unchanged.
func (s *Store) SetTagConfig(c TagConfig) {
	ts := newTagSet(c)
	s.mu.Lock()
	s.tags = ts
	s.mu.Unlock()
}

// New returns an empty store.
func New() *Store {
	return &Store{
		counters:   map[string]*Counter{},
		gauges:     map[string]*Gauge{},
		histograms: map[string]*Histogram{},
		kinds:      map[string]Kind{},
	}
}

// Counter returns the counter named name, creating it at zero.
func (s *Store) Counter(name string) *Counter { return s.counterKind(name, Builtin) }

// CustomCounter is Counter for a plugin-defined metric.
func (s *Store) CustomCounter(name string) *Counter { return s.counterKind(name, Custom) }

func (s *Store) counterKind(name string, k Kind) *Counter {
	s.mu.RLock()
	c := s.counters[name]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.counters[name]; c == nil {
		c = &Counter{name: name}
		s.counters[name] = c
		s.kinds[name] = k
	}
	return c
}

// Gauge returns the gauge named name, creating it at zero.
func (s *Store) Gauge(name string) *Gauge { return s.gaugeKind(name, Builtin) }

// CustomGauge is Gauge for a plugin-defined metric.
func (s *Store) CustomGauge(name string) *Gauge { return s.gaugeKind(name, Custom) }

func (s *Store) gaugeKind(name string, k Kind) *Gauge {
	s.mu.RLock()
	g := s.gauges[name]
	s.mu.RUnlock()
	if g != nil {
		return g
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.gauges[name]; g == nil {
		g = &Gauge{name: name}
		s.gauges[name] = g
		s.kinds[name] = k
	}
	return g
}

// Histogram returns the histogram named name with DefaultBuckets.
func (s *Store) Histogram(name string) *Histogram { return s.histogramKind(name, Builtin) }

// CustomHistogram is Histogram for a plugin-defined metric.
func (s *Store) CustomHistogram(name string) *Histogram { return s.histogramKind(name, Custom) }

func (s *Store) histogramKind(name string, k Kind) *Histogram {
	s.mu.RLock()
	h := s.histograms[name]
	s.mu.RUnlock()
	if h != nil {
		return h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h = s.histograms[name]; h == nil {
		h = &Histogram{name: name, store: s, bounds: DefaultBuckets, buckets: make([]uint64, len(DefaultBuckets)+1)}
		s.histograms[name] = h
		s.kinds[name] = k
	}
	return h
}

// Snapshot is a sorted, consistent-enough copy of every stat for
// rendering.
type Snapshot struct {
	Counters   []NamedValue
	Gauges     []NamedValue
	Histograms []NamedHistogram
	// tags is the store's tag extraction (nil: the defaults).
	tags *tagSet
}

// NamedValue is one counter or gauge reading.
type NamedValue struct {
	Name  string
	Kind  Kind
	Value int64
}

// NamedHistogram is one histogram reading.
type NamedHistogram struct {
	Name string
	Kind Kind
	HistogramSnapshot
}

// Snapshot reads every stat, sorted by name.
func (s *Store) Snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := Snapshot{tags: s.tags}
	for n, c := range s.counters {
		out.Counters = append(out.Counters, NamedValue{Name: n, Kind: s.kinds[n], Value: int64(c.Value())})
	}
	for n, g := range s.gauges {
		out.Gauges = append(out.Gauges, NamedValue{Name: n, Kind: s.kinds[n], Value: g.Value()})
	}
	for n, h := range s.histograms {
		out.Histograms = append(out.Histograms, NamedHistogram{Name: n, Kind: s.kinds[n], HistogramSnapshot: h.Snapshot()})
	}
	sort.Slice(out.Counters, func(i, j int) bool { return out.Counters[i].Name < out.Counters[j].Name })
	sort.Slice(out.Gauges, func(i, j int) bool { return out.Gauges[i].Name < out.Gauges[j].Name })
	sort.Slice(out.Histograms, func(i, j int) bool { return out.Histograms[i].Name < out.Histograms[j].Name })
	return out
}
