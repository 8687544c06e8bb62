package wasm

import (
	"context"
	"math"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/stats"
)

// Metric types (proxy_metric_type_t). A metric id carries its type in its
// low two bits and ids of one type step by 4, as in Envoy.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
	metricTypeMask  = 3
	metricIDStep    = 4
)

// metricTable maps one instance's metric ids to stats. Ids are per
// instance (per VM copy in Envoy); defining a name again gives a new id
// for the same underlying stat.
type metricTable struct {
	next       [3]uint32
	counters   map[uint32]*stats.Counter
	gauges     map[uint32]*stats.Gauge
	histograms map[uint32]*stats.Histogram
}

func (t *metricTable) define(store *stats.Store, kind uint32, name string) uint32 {
	if t.counters == nil {
		t.counters = map[uint32]*stats.Counter{}
		t.gauges = map[uint32]*stats.Gauge{}
		t.histograms = map[uint32]*stats.Histogram{}
		for i := range t.next {
			t.next[i] = uint32(i)
		}
	}
	id := t.next[kind]
	t.next[kind] += metricIDStep
	// Envoy shows custom metrics under the name the plugin gave (its
	// internal wasmcustom. namespace is invisible in /stats and Prometheus).
	switch kind {
	case metricCounter:
		t.counters[id] = store.CustomCounter(name)
	case metricGauge:
		t.gauges[id] = store.CustomGauge(name)
	default:
		t.histograms[id] = store.CustomHistogram(name)
	}
	return id
}

// proxy_define_metric(type, name_ptr, name_len, out_id) -> status.
func proxyDefineMetric(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_define_metric")
	kind := api.DecodeU32(stack[0])
	if kind > metricHistogram {
		setStatus(stack, statusBadArgument)
		return
	}
	name, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	outPtr := api.DecodeU32(stack[3])
	if !ok || !writableWord(m, outPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	id := inst.metrics.define(inst.plugin.host.stats, kind, string(name))
	setStatus(stack, putU32(m, outPtr, id))
}

// proxy_increment_metric(id, i64 delta) -> status: counters take only
// positive deltas, gauges both signs, histograms none (BAD_ARGUMENT).
func proxyIncrementMetric(ctx context.Context, _ api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_increment_metric")
	id, delta := api.DecodeU32(stack[0]), int64(stack[1])
	t := &inst.metrics
	switch id & metricTypeMask {
	case metricCounter:
		c := t.counters[id]
		switch {
		case c == nil:
			setStatus(stack, statusNotFound)
		case delta <= 0:
			setStatus(stack, statusBadArgument)
		default:
			c.Add(uint64(delta))
			setStatus(stack, statusOK)
		}
	case metricGauge:
		g := t.gauges[id]
		if g == nil {
			setStatus(stack, statusNotFound)
			return
		}
		g.Add(delta)
		setStatus(stack, statusOK)
	default:
		setStatus(stack, statusBadArgument)
	}
}

// proxy_record_metric(id, u64 value) -> status: counter adds, gauge sets,
// histogram records a sample.
func proxyRecordMetric(ctx context.Context, _ api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_record_metric")
	id, value := api.DecodeU32(stack[0]), stack[1]
	t := &inst.metrics
	st := statusNotFound
	switch id & metricTypeMask {
	case metricCounter:
		if c := t.counters[id]; c != nil {
			c.Add(value)
			st = statusOK
		}
	case metricGauge:
		if g := t.gauges[id]; g != nil {
			g.Set(int64(min(value, math.MaxInt64)))
			st = statusOK
		}
	case metricHistogram:
		if h := t.histograms[id]; h != nil {
			h.Record(float64(value))
			st = statusOK
		}
	default:
		st = statusBadArgument
	}
	setStatus(stack, st)
}

// proxy_get_metric(id, out_u64) -> status; histograms cannot be read.
func proxyGetMetric(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_metric")
	id, outPtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	t := &inst.metrics
	switch id & metricTypeMask {
	case metricCounter:
		if c := t.counters[id]; c != nil {
			setStatus(stack, putU64(m, outPtr, c.Value()))
			return
		}
		setStatus(stack, statusNotFound)
	case metricGauge:
		if g := t.gauges[id]; g != nil {
			setStatus(stack, putU64(m, outPtr, uint64(g.Value())))
			return
		}
		setStatus(stack, statusNotFound)
	default:
		setStatus(stack, statusBadArgument)
	}
}

func metricFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_define_metric", ints(4), oneI32, proxyDefineMetric},
		{"proxy_increment_metric", []api.ValueType{i32, i64}, oneI32, proxyIncrementMetric},
		{"proxy_record_metric", []api.ValueType{i32, i64}, oneI32, proxyRecordMetric},
		{"proxy_get_metric", ints(2), oneI32, proxyGetMetric},
	}
}
