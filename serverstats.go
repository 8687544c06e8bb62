package wasmproxy

import (
	"context"
	"runtime"
	"time"

	"github.com/wasmproxy/wasmproxy/stats"
)

// serverStats keeps Envoy's server.* gauges current (server.live,
// server.uptime, server.concurrency, server.memory_allocated,
// server.memory_heap_size) plus server.goroutines, which Envoy has no
// counterpart for but which tells a leak in a Go process at a glance
// (the soak bench and the leak test read it). It samples once a second
// until ctx ends.
func serverStats(ctx context.Context, st *stats.Store, concurrency int, draining func() bool) {
	live := st.Gauge("server.live")
	uptime := st.Gauge("server.uptime")
	st.Gauge("server.concurrency").Set(int64(concurrency))
	allocated := st.Gauge("server.memory_allocated")
	heapSize := st.Gauge("server.memory_heap_size")
	goroutines := st.Gauge("server.goroutines")
	start := time.Now()
	sample := func() {
		if draining() {
			live.Set(0)
		} else {
			live.Set(1)
		}
		uptime.Set(int64(time.Since(start).Seconds()))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		allocated.Set(int64(ms.HeapAlloc))
		heapSize.Set(int64(ms.HeapSys))
		goroutines.Set(int64(runtime.NumGoroutine()))
	}
	sample()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sample()
		}
	}
}
