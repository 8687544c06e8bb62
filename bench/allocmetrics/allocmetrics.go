// Package allocmetrics serves the Go runtime's allocation counters on a
// loopback address, for bench/run.sh and bench/h2load.sh: they read them
// before and after a load run and divide by the requests completed.
//
// Only those scripts link it into wasmproxy: they build cmd/wasmproxy with
// `go build -overlay`, adding one file that imports this package for its
// init. The product binary has no such endpoint; Envoy's admin has no Go
// runtime metrics to put them under (docs/decisions.md §55).
//
// When WASMPROXY_BENCH_METRICS names a loopback address (127.0.0.1:PORT),
// init listens there and answers every GET with lines "NAME VALUE" for
// the runtime/metrics samples in Names. Unset, the package does nothing.
package allocmetrics

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"strconv"
)

// EnvAddr is the environment variable naming the address to serve on.
const EnvAddr = "WASMPROXY_BENCH_METRICS"

// Names are the samples served. Objects allocated = the first plus the
// second: /gc/heap/allocs:objects leaves out the tiny allocations packed
// into a shared 16-byte block, which testing.AllocsPerRun (MemStats.Mallocs)
// counts.
var Names = []string{
	"/gc/heap/allocs:objects",
	"/gc/heap/tiny/allocs:objects",
	"/gc/heap/allocs:bytes",
	"/gc/cycles/total:gc-cycles",
}

func init() {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		return
	}
	if _, err := Listen(addr); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%s: %v\n", EnvAddr, addr, err)
		os.Exit(1)
	}
}

// Listen serves the samples on addr, a loopback host:port, until the
// process ends. It returns the listener (for its bound address).
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q is not a loopback IP address", host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go func() { _ = http.Serve(ln, http.HandlerFunc(serve)) }()
	return ln, nil
}

func serve(w http.ResponseWriter, _ *http.Request) {
	samples := make([]metrics.Sample, len(Names))
	for i, n := range Names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var b bytes.Buffer
	for _, s := range samples {
		b.WriteString(s.Name)
		b.WriteByte(' ')
		if s.Value.Kind() == metrics.KindUint64 {
			b.WriteString(strconv.FormatUint(s.Value.Uint64(), 10))
		} else {
			b.WriteString("unsupported")
		}
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
