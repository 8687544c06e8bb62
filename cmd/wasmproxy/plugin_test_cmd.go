package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
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
			return runPluginTests(cmd.OutOrStdout(), args[0], args[1], pluginTestOptions{
				bench: bench, filter: filter, timeout: timeout, cacheDir: cacheDir,
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&bench, "bench", false, "after the cases pass, benchmark each one (ns/op, B/op, allocs/op)")
	fl.StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	fl.DurationVar(&timeout, "timeout", wasmtest.DefaultTimeout, "bound on each call into the plugin")
	fl.StringVar(&cacheDir, "cache-dir", defaultCacheDir(), "directory for compiled Wasm modules (\"\" disables the cache)")
	return cmd
}

type pluginTestOptions struct {
	bench    bool
	filter   *regexp.Regexp
	timeout  time.Duration
	cacheDir string
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
	var passed []int
	failed, ran := 0, 0
	for i := range cf.Cases {
		c := &cf.Cases[i]
		if o.filter != nil && !o.filter.MatchString(c.Name) {
			continue
		}
		ran++
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
