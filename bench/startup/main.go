// Command startup measures how long wasmproxy takes from exec to its
// admin /ready answering 200: it starts each binary (-bin, repeatable,
// label=path) RUNS times with the given arguments, the binaries taking
// turns so that a change in the machine's load hits them alike, polls
// /ready every millisecond, stops the process (SIGTERM) once ready and
// prints each binary's times and median. Each binary has its own cache
// directory, <cache-dir>/<label>. With -cold it is emptied before each
// start, so wazero compiles; without it the directory is left as the
// previous start wrote it.
//
// bench/startup.sh builds the binary and the seed plugin and runs this
// for a cold and a warm cache; see docs/perf.md ("Plugin start-up").
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	var bins []string
	flag.Func("bin", "label=path of a wasmproxy binary (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want label=path, got %q", v)
		}
		bins = append(bins, v)
		return nil
	})
	dir0 := flag.String("dir", ".", "working directory of the process")
	ready := flag.String("ready", "http://127.0.0.1:8001/ready", "URL that answers 200 when the proxy is ready")
	cacheDir := flag.String("cache-dir", "", "compilation cache directory, passed as --cache-dir (required)")
	cold := flag.Bool("cold", false, "empty the cache directory before every start")
	runs := flag.Int("runs", 5, "number of starts")
	timeout := flag.Duration("timeout", 60*time.Second, "give up on a start after this long")
	flag.Parse()
	if len(bins) == 0 || *cacheDir == "" {
		fmt.Fprintln(os.Stderr, "startup: -bin and -cache-dir are required; the remaining arguments go to the binary")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	times := make([][]time.Duration, len(bins))
	for i := 0; i < *runs; i++ {
		for b, spec := range bins {
			label, bin, _ := strings.Cut(spec, "=")
			dir := filepath.Join(*cacheDir, label)
			if *cold {
				if err := os.RemoveAll(dir); err != nil {
					die("emptying %s: %v", dir, err)
				}
			}
			d, err := once(client, bin, *dir0, *ready, dir, *timeout, flag.Args())
			if err != nil {
				die("%s, start %d: %v", label, i+1, err)
			}
			times[b] = append(times[b], d)
		}
	}
	for b, spec := range bins {
		label, _, _ := strings.Cut(spec, "=")
		parts := make([]string, len(times[b]))
		for i, d := range times[b] {
			parts[i] = ms(d)
		}
		sorted := append([]time.Duration(nil), times[b]...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		fmt.Printf("%-6s median %8s ms (runs: %s)\n", label, ms(sorted[len(sorted)/2]), strings.Join(parts, ", "))
	}
}

// once starts the binary, waits for ready to answer 200 and stops it.
func once(client *http.Client, bin, dir, ready, cacheDir string, timeout time.Duration, args []string) (time.Duration, error) {
	cmd := exec.Command(bin, append([]string{"--cache-dir", cacheDir}, args...)...)
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("process exited before ready (%v): %s", err, out.String())
		default:
		}
		resp, err := client.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d := time.Since(start)
				stop()
				return d, nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	return 0, fmt.Errorf("not ready after %s: %s", timeout, out.String())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "startup: "+format+"\n", args...)
	os.Exit(1)
}
