package proxytest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/serde"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// The VM and plugin context: start, ticks, logs, metrics, properties,
// shared data, shared queues and foreign functions.

func (e *hostEmulator) StartVM() types.OnVMStartStatus {
	var ok bool
	e.call(PluginContextID, func() {
		ok = hostabi.Native.OnVMStart(PluginContextID, uint32(len(e.vmConfiguration)))
	})
	return types.OnVMStartStatus(ok)
}

func (e *hostEmulator) StartPlugin() types.OnPluginStartStatus {
	var ok bool
	e.call(PluginContextID, func() {
		ok = hostabi.Native.OnConfigure(PluginContextID, uint32(len(e.pluginConfiguration)))
	})
	return types.OnPluginStartStatus(ok)
}

func (e *hostEmulator) FinishVM() bool {
	var done bool
	e.call(PluginContextID, func() { done = hostabi.Native.OnDone(PluginContextID) })
	return done
}

func (e *hostEmulator) Tick() {
	e.call(PluginContextID, func() { hostabi.Native.OnTick(PluginContextID) })
}

func (e *hostEmulator) GetTickPeriod() uint32 { return e.tickPeriod }

func (e *hostEmulator) GetTraceLogs() []string    { return e.logsAt(types.LogLevelTrace) }
func (e *hostEmulator) GetDebugLogs() []string    { return e.logsAt(types.LogLevelDebug) }
func (e *hostEmulator) GetInfoLogs() []string     { return e.logsAt(types.LogLevelInfo) }
func (e *hostEmulator) GetWarnLogs() []string     { return e.logsAt(types.LogLevelWarn) }
func (e *hostEmulator) GetErrorLogs() []string    { return e.logsAt(types.LogLevelError) }
func (e *hostEmulator) GetCriticalLogs() []string { return e.logsAt(types.LogLevelCritical) }

func (e *hostEmulator) logsAt(l types.LogLevel) []string { return slices.Clone(e.logs[l]) }

func (e *hostEmulator) RegisterForeignFunction(name string, f func([]byte) []byte) {
	e.foreign[name] = f
}

// --- properties -------------------------------------------------------------

func serializePath(path []string) []byte { return serde.SerializePropertyPath(path) }

func (e *hostEmulator) GetProperty(path []string) ([]byte, error) {
	if len(path) == 0 {
		return nil, fmt.Errorf("proxytest: GetProperty: empty path: %w", types.ErrorStatusBadArgument)
	}
	v, ok := e.properties[string(serializePath(path))]
	if !ok {
		return nil, types.ErrorStatusNotFound
	}
	return slices.Clone(v), nil
}

func (e *hostEmulator) GetPropertyMap(path []string) ([][2]string, error) {
	v, err := e.GetProperty(path)
	if err != nil {
		return nil, err
	}
	m := serde.DeserializeMap(v)
	if m == nil {
		return nil, fmt.Errorf("proxytest: GetPropertyMap: property %q is not a map in the header-pair encoding: %w", path, types.ErrorStatusSerializationFailure)
	}
	return m, nil
}

func (e *hostEmulator) SetProperty(path []string, data []byte) error {
	if len(path) == 0 {
		return fmt.Errorf("proxytest: SetProperty: empty path: %w", types.ErrorStatusBadArgument)
	}
	if len(data) == 0 {
		return fmt.Errorf("proxytest: SetProperty %q: empty value: %w", path, types.ErrorStatusBadArgument)
	}
	e.properties[string(serializePath(path))] = slices.Clone(data)
	return nil
}

// --- metrics ----------------------------------------------------------------

// Metric ids carry their type in the low two bits, as Envoy's do.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

var metricTypeNames = [...]string{"counter", "gauge", "histogram"}

type metric struct {
	kind  uint32
	name  string
	value int64 // counter, gauge; a histogram's last sample
}

type metrics struct {
	byID   map[uint32]*metric
	byName map[string]uint32
	next   uint32
}

func (m *metrics) init() {
	m.byID = map[uint32]*metric{}
	m.byName = map[string]uint32{}
}

// define returns the id of the metric name, creating it; a name is one
// metric of one type.
func (m *metrics) define(kind uint32, name string) (uint32, bool) {
	if id, ok := m.byName[name]; ok {
		return id, m.byID[id].kind == kind
	}
	id := m.next<<2 | kind
	m.next++
	m.byID[id] = &metric{kind: kind, name: name}
	m.byName[name] = id
	return id, true
}

func (e *hostEmulator) metricValue(name string, kind uint32) (uint64, error) {
	id, ok := e.metrics.byName[name]
	if !ok {
		return 0, fmt.Errorf("proxytest: the plugin defined no metric %q", name)
	}
	m := e.metrics.byID[id]
	if m.kind != kind {
		return 0, fmt.Errorf("proxytest: metric %q is a %s, not a %s", name, metricTypeNames[m.kind], metricTypeNames[kind])
	}
	return uint64(m.value), nil
}

func (e *hostEmulator) GetCounterMetric(name string) (uint64, error) {
	return e.metricValue(name, metricCounter)
}

func (e *hostEmulator) GetGaugeMetric(name string) (uint64, error) {
	return e.metricValue(name, metricGauge)
}

func (e *hostEmulator) GetHistogramMetric(name string) (uint64, error) {
	return e.metricValue(name, metricHistogram)
}

// --- shared data ------------------------------------------------------------

type sharedValue struct {
	data []byte
	cas  uint32
}

// nextCas returns a CAS value; never 0, which means "unconditional".
func (e *hostEmulator) nextCas() uint32 {
	e.cas++
	if e.cas == 0 {
		e.cas++
	}
	return e.cas
}

// setShared stores value unless cas is non-zero and is not the key's
// current one (a missing key accepts any cas, as in Envoy).
func (e *hostEmulator) setShared(key string, value []byte, cas uint32) error {
	if cur, ok := e.shared[key]; ok && cas != 0 && cas != cur.cas {
		return types.ErrorStatusCasMismatch
	}
	e.shared[key] = &sharedValue{data: slices.Clone(value), cas: e.nextCas()}
	return nil
}

func (e *hostEmulator) GetSharedData(key string) ([]byte, uint32, error) {
	v, ok := e.shared[key]
	if !ok {
		return nil, 0, types.ErrorStatusNotFound
	}
	return slices.Clone(v.data), v.cas, nil
}

func (e *hostEmulator) SetSharedData(key string, value []byte, cas uint32) error {
	return e.setShared(key, value, cas)
}

// --- shared queues ------------------------------------------------------------

type queue struct {
	name      string
	items     [][]byte
	registrar uint32 // the plugin context notified of new items
}

type queues struct {
	byID   map[uint32]*queue
	byName map[string]uint32
	next   uint32
}

func (q *queues) init() {
	q.byID = map[uint32]*queue{}
	q.byName = map[string]uint32{}
	q.next = 1
}

// enqueue appends data and has the registering plugin context notified
// once the current call into the plugin has returned.
func (e *hostEmulator) enqueue(id uint32, data []byte) error {
	q, ok := e.queues.byID[id]
	if !ok {
		return types.ErrorStatusNotFound
	}
	q.items = append(q.items, slices.Clone(data))
	root := q.registrar
	e.later(func() {
		e.call(root, func() { hostabi.Native.OnQueueReady(root, id) })
	})
	return nil
}

func (e *hostEmulator) dequeue(id uint32) ([]byte, error) {
	q, ok := e.queues.byID[id]
	if !ok {
		return nil, types.ErrorStatusNotFound
	}
	if len(q.items) == 0 {
		return nil, types.ErrorStatusEmpty
	}
	item := q.items[0]
	q.items = q.items[1:]
	return item, nil
}

func (e *hostEmulator) GetQueueSize(queueID uint32) int {
	if q, ok := e.queues.byID[queueID]; ok {
		return len(q.items)
	}
	return 0
}

func (e *hostEmulator) ResolveSharedQueue(name string) (uint32, error) {
	id, ok := e.queues.byName[name]
	if !ok {
		return 0, fmt.Errorf("proxytest: the plugin registered no shared queue %q: %w", name, types.ErrorStatusNotFound)
	}
	return id, nil
}

func (e *hostEmulator) EnqueueSharedQueue(queueID uint32, data []byte) error {
	if err := e.enqueue(queueID, data); err != nil {
		return fmt.Errorf("proxytest: EnqueueSharedQueue: no queue %d: %w", queueID, err)
	}
	return nil
}

func (e *hostEmulator) DequeueSharedQueue(queueID uint32) ([]byte, error) {
	v, err := e.dequeue(queueID)
	if errors.Is(err, types.ErrorStatusNotFound) {
		return nil, fmt.Errorf("proxytest: DequeueSharedQueue: no queue %d: %w", queueID, err)
	}
	return v, err
}
