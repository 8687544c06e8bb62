package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// runInspectTimings is `plugin inspect --timings`: the inspection, then,
// when the module can run, a real start of it as a plugin (empty plugin
// and VM configuration, the default compilation cache directory, a pool
// of GOMAXPROCS instances, as `wasmproxy -c` would run it) and the time
// each start-up phase took (wasm.StartupTimings). Run it twice to see a
// warm start: the first fills the cache.
func runInspectTimings(parent context.Context, out io.Writer, file string, kind wasm.FilterKind, asJSON bool) error {
	ctx := parent
	if ctx == nil {
		ctx = context.Background()
	}
	code, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	host, err := wasm.NewHost(ctx, wasm.Options{PoolSize: 1, Logs: logging.NewRegistry(io.Discard, logging.LevelError)})
	if err != nil {
		return err
	}
	in, err := host.Inspect(ctx, code, kind)
	host.Close(context.Background())
	if err != nil {
		return err
	}
	report := inspectReport{File: file, Inspection: in, CanRun: in.CanRun()}
	var startErr error
	if in.CanRun() {
		tm, err := startTimings(ctx, file)
		if err != nil {
			startErr = fmt.Errorf("%s cannot start: %w", file, err)
		} else {
			report.Timings = &tm
		}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printInspection(out, file, in)
		if report.Timings != nil {
			printTimings(out, *report.Timings)
		}
	}
	if !in.CanRun() {
		return fmt.Errorf("%s cannot run: %s", file, in.Errors[0])
	}
	return startErr
}

// startTimings loads file as a plugin in a host of its own and returns
// its start-up timings. The host's own start (runtime, host modules,
// cache trim) is not a phase of the plugin's and is left out.
func startTimings(ctx context.Context, file string) (wasm.StartupTimings, error) {
	host, err := wasm.NewHost(ctx, wasm.Options{CacheDir: defaultCacheDir(), Logs: logging.NewRegistry(io.Discard, logging.LevelError)})
	if err != nil {
		return wasm.StartupTimings{}, err
	}
	defer host.Close(context.Background())
	p, err := host.LoadPlugin(ctx, &config.WasmPlugin{Name: "inspect", CodeFile: file})
	if err != nil {
		return wasm.StartupTimings{}, err
	}
	defer p.Close(context.Background())
	return p.StartupTimings(), nil
}

// printTimings writes one line per phase, then the total, which is the
// time to the first instance ready: the pool's other instances start
// after it (their phase says "after ready").
func printTimings(out io.Writer, t wasm.StartupTimings) {
	fmt.Fprintf(out, "start-up (cache %s):\n", orDisabled(defaultCacheDir()))
	for _, p := range t.Phases {
		detail := ""
		if p.Detail != "" {
			detail = "  (" + p.Detail + ")"
		}
		fmt.Fprintf(out, "  %-13s %10s%s\n", p.Name, ms(p.Duration), detail)
	}
	fmt.Fprintf(out, "  %-13s %10s  (to the first instance ready)\n", "total", ms(t.Total))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func orDisabled(dir string) string {
	if dir == "" {
		return "disabled"
	}
	return dir
}
