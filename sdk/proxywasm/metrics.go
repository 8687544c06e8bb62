package proxywasm

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Metrics are defined once (typically in OnPluginStart or OnVMStart) and
// then updated from any context. The host exports them under the given name
// (Envoy: in /stats and /stats/prometheus). As in proxy-wasm-go-sdk, a host
// error on a metric call is a programming error and panics.

type (
	// MetricCounter is a monotonically increasing counter; create it with
	// DefineCounterMetric.
	MetricCounter uint32
	// MetricGauge is a value that goes up and down; create it with
	// DefineGaugeMetric.
	MetricGauge uint32
	// MetricHistogram records a distribution of values; create it with
	// DefineHistogramMetric.
	MetricHistogram uint32
)

func defineMetric(metricType uint32, name string) uint32 {
	retU32 = 0
	st := proxyDefineMetric(metricType, stringPtr(name), uint32(len(name)), unsafe.Pointer(&retU32))
	runtime.KeepAlive(name)
	if err := statusToError(st); err != nil {
		panic(fmt.Sprintf("proxywasm: define metric %q: %v", name, err))
	}
	return retU32
}

func getMetric(id uint32) uint64 {
	retValue = 0
	if err := statusToError(proxyGetMetric(id, unsafe.Pointer(&retValue))); err != nil {
		panic(fmt.Sprintf("proxywasm: get metric %d: %v", id, err))
	}
	return retValue
}

// DefineCounterMetric defines (or looks up) the counter called name.
func DefineCounterMetric(name string) MetricCounter {
	return MetricCounter(defineMetric(metricCounter, name))
}

// Value returns the counter's current value.
func (m MetricCounter) Value() uint64 { return getMetric(uint32(m)) }

// Increment adds offset to the counter.
func (m MetricCounter) Increment(offset uint64) {
	if err := statusToError(proxyIncrementMetric(uint32(m), int64(offset))); err != nil {
		panic(fmt.Sprintf("proxywasm: increment counter %d by %d: %v", uint32(m), offset, err))
	}
}

// DefineGaugeMetric defines (or looks up) the gauge called name.
func DefineGaugeMetric(name string) MetricGauge {
	return MetricGauge(defineMetric(metricGauge, name))
}

// Value returns the gauge's current value.
func (m MetricGauge) Value() int64 { return int64(getMetric(uint32(m))) }

// Add adds offset (which may be negative) to the gauge.
func (m MetricGauge) Add(offset int64) {
	if err := statusToError(proxyIncrementMetric(uint32(m), offset)); err != nil {
		panic(fmt.Sprintf("proxywasm: add %d to gauge %d: %v", offset, uint32(m), err))
	}
}

// DefineHistogramMetric defines (or looks up) the histogram called name.
func DefineHistogramMetric(name string) MetricHistogram {
	return MetricHistogram(defineMetric(metricHistogram, name))
}

// Value returns the histogram's value as the host reports it. Envoy does not
// support reading histograms, so there it panics.
func (m MetricHistogram) Value() uint64 { return getMetric(uint32(m)) }

// Record adds one sample to the histogram.
func (m MetricHistogram) Record(value uint64) {
	if err := statusToError(proxyRecordMetric(uint32(m), value)); err != nil {
		panic(fmt.Sprintf("proxywasm: record %d in histogram %d: %v", value, uint32(m), err))
	}
}
