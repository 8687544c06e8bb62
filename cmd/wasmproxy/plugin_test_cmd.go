package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// newPluginTestCommand is `wasmproxy plugin test FILE.wasm CASES.yaml`:
// declarative cases (request in, expectations out) run on the real host
// through wasmtest, with no Go code; --bench measures each passing case.
func newPluginTestCommand() *cobra.Command {
	var (
		bench    bool
		run      string
		timeout  time.Duration
		cacheDir string
		worker   bool
	)
	cmd := &cobra.Command{
		Use:   "test FILE.wasm CASES.yaml",
		Short: "Run declarative test cases (YAML) against a compiled plugin",
		Long: "Runs each case of CASES.yaml against FILE.wasm on wasmproxy's real host: a fresh\n" +
			"plugin per case, the case's request (and upstream response) sent through it,\n" +
			"then its expectations checked. The format is in docs/guide.md. Exits 1 when a\n" +
			"case fails. With --bench, also reports ns/op and allocations per case.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var filter *regexp.Regexp
			if run != "" {
				var err error
				if filter, err = regexp.Compile(run); err != nil {
					return fmt.Errorf("--run: %w", err)
				}
			}
			o := pluginTestOptions{bench: bench, filter: filter, timeout: timeout, cacheDir: cacheDir}
			if worker {
				o.progress = newProgressWriter(cmd.OutOrStdout())
				return runPluginTests(o.progress, args[0], args[1], o)
			}
			return superviseWorker(cmd.Context(), cmd.OutOrStdout(), os.Args[1:], timeout)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&bench, "bench", false, "after the cases pass, benchmark each one (ns/op, B/op, allocs/op)")
	fl.StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	fl.DurationVar(&timeout, "timeout", wasmtest.DefaultTimeout, "bound on each call into the plugin")
	fl.StringVar(&cacheDir, "cache-dir", defaultCacheDir(), "directory for compiled Wasm modules (\"\" disables the cache)")
	fl.BoolVar(&worker, workerFlag, false, "run the cases in this process (set by the supervising process)")
	_ = fl.MarkHidden(workerFlag)
	return cmd
}

type pluginTestOptions struct {
	bench    bool
	filter   *regexp.Regexp
	timeout  time.Duration
	cacheDir string
	progress *progressWriter // worker mode: markers for the supervisor
}

// runPluginTests prints one line per case, go test style, with the
// failure messages indented below a failing case.
func runPluginTests(out io.Writer, wasmFile, casesFile string, o pluginTestOptions) error {
	if _, err := os.Stat(wasmFile); err != nil {
		return fmt.Errorf("plugin test: %w", err)
	}
	cf, err := wasmtest.ReadCaseFile(casesFile)
	if err != nil {
		return fmt.Errorf("plugin test: %w", err)
	}
	opts := []wasmtest.Option{wasmtest.Timeout(o.timeout), wasmtest.CompilationCache(o.cacheDir)}
	if o.progress != nil {
		opts = append(opts, wasmtest.Progress(o.progress.call))
	}
	var passed []int
	failed, ran := 0, 0
	for i := range cf.Cases {
		c := &cf.Cases[i]
		if o.filter != nil && !o.filter.MatchString(c.Name) {
			continue
		}
		ran++
		o.progress.mark("case", c.Name)
		start := time.Now()
		failures := wasmtest.Capture(func(t wasmtest.TB) { cf.RunCase(t, wasmFile, i, opts...) })
		took := time.Since(start).Round(time.Millisecond)
		if len(failures) == 0 {
			fmt.Fprintf(out, "--- PASS: %s (%v)\n", c.Name, took)
			passed = append(passed, i)
			continue
		}
		failed++
		fmt.Fprintf(out, "--- FAIL: %s (%v)\n", c.Name, took)
		fmt.Fprintf(out, "    %s:%d: case %q\n", casesFile, c.Line(), c.Name)
		for _, f := range failures {
			fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
		if call, stuck := wasmtest.Stuck(); stuck {
			// The guest still spins on this process's processor; running
			// more cases here could hang.
			fmt.Fprintf(out, "FAIL\t%s\tstopped after case %q\n", casesFile, c.Name)
			return fmt.Errorf("case %q: %s (an endless loop?); the run stopped", c.Name, call)
		}
	}
	if ran == 0 {
		return fmt.Errorf("plugin test: no case matches --run %q", o.filter)
	}
	if failed > 0 {
		fmt.Fprintf(out, "FAIL\t%s\t%d of %d cases failed\n", casesFile, failed, ran)
		return fmt.Errorf("%d of %d cases failed", failed, ran)
	}
	fmt.Fprintf(out, "ok\t%s\t%d cases passed\n", casesFile, ran)
	if !o.bench {
		return nil
	}
	var benchErr error
	// A benchmark calls the plugin without a bound: the cases just
	// passed, and a watchdog would measure itself.
	o.progress.mark("bench", "")
	for _, i := range passed {
		c := &cf.Cases[i]
		r, err := cf.BenchCase(wasmFile, i, wasmtest.CompilationCache(o.cacheDir))
		name := "Benchmark/" + strings.ReplaceAll(c.Name, " ", "_")
		if err != nil {
			fmt.Fprintf(out, "%s\tFAIL: %v\n", name, err)
			benchErr = errors.New("a benchmark failed")
			continue
		}
		fmt.Fprintf(out, "%-40s\t%s\t%s\n", name, r.String(), r.MemString())
	}
	return benchErr
}

// workerFlag marks the process that runs the cases under a supervisor.
const workerFlag = "worker"

// A plugin stuck in an endless loop cannot be stopped from inside the
// process: Wasm code is not preemptible, and a spinning guest can stall
// the garbage collector and with it every goroutine, the timeout's too.
// So `plugin test` runs the cases in a child process (the same command
// with --worker) and watches it from outside: the child announces each
// case and each call into the plugin with its time bound, and the
// supervisor kills it when a call overruns. Marker lines start with
// markerPrefix; everything else is passed through.
const markerPrefix = "\x01wasmproxy-plugin-test "

// progressWriter writes the worker's output and markers; nil writes
// nothing (in-process runs).
type progressWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func newProgressWriter(out io.Writer) *progressWriter { return &progressWriter{out: out} }

func (w *progressWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *progressWriter) mark(kind, text string) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "%s%s %s\n", markerPrefix, kind, text)
}

func (w *progressWriter) call(call string, bound time.Duration) {
	w.mark("call", bound.String()+" "+call)
}

// superviseWorker runs the cases in a child process and stops it when a
// call into the plugin outlives its bound (plus a margin for the
// harness), reporting the case and the call.
func superviseWorker(ctx context.Context, out io.Writer, args []string, timeout time.Duration) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.CommandContext(ctx, exe, append(args, "--"+workerFlag)...)
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		return err
	}
	const margin = 5 * time.Second
	var (
		mu        sync.Mutex
		caseName  string
		call      string
		callBound = loadBound
		deadline  = time.Now().Add(loadBound + margin) // the first call compiles
		watching  = true
	)
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			rest, isMarker := strings.CutPrefix(line, markerPrefix)
			mu.Lock()
			if !isMarker {
				fmt.Fprintln(out, line)
			} else {
				kind, text, _ := strings.Cut(rest, " ")
				switch kind {
				case "case":
					caseName, call, callBound = text, "", loadBound
					deadline = time.Now().Add(loadBound + margin)
				case "call":
					b, desc, _ := strings.Cut(text, " ")
					bound, err := time.ParseDuration(b)
					if err != nil {
						bound = timeout
					}
					call, callBound = desc, bound
					deadline = time.Now().Add(bound + margin)
				case "bench":
					watching = false
				}
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-lines:
			err := child.Wait()
			if err == nil {
				return nil
			}
			// The worker's own error line, without main's prefix.
			msg := strings.TrimSpace(stderr.String())
			if i := strings.LastIndex(msg, "\n"); i >= 0 {
				msg = msg[i+1:]
			}
			if msg = strings.TrimPrefix(msg, "wasmproxy: "); msg == "" {
				msg = err.Error()
			}
			return errors.New(msg)
		case <-tick.C:
			mu.Lock()
			stuck := watching && time.Now().After(deadline)
			name, what, bound := caseName, call, callBound
			mu.Unlock()
			if !stuck {
				continue
			}
			_ = child.Process.Kill()
			<-lines
			_ = child.Wait()
			if what == "" {
				what = "loading the plugin"
			}
			fmt.Fprintf(out, "--- FAIL: %s\n    %s did not return within %v (an endless loop?); a plugin cannot be interrupted, so the run stopped here\n", name, what, bound)
			return fmt.Errorf("case %q: %s did not return within %v (an endless loop?); the run stopped", name, what, bound)
		}
	}
}

// loadBound is how long loading a plugin (compiling it) may take.
const loadBound = 2 * time.Minute
