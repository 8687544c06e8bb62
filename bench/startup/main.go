// Command startup measures how long wasmproxy takes from exec to its
// admin /ready answering 200: it starts the binary RUNS times with the
// given arguments, polls /ready every millisecond, stops the process
// (SIGTERM) once ready and prints each time and the median. With -cold
// the cache directory is emptied before each start, so wazero compiles;
// without it the directory is left as the previous start wrote it.
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
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "", "wasmproxy binary")
	dir := flag.String("dir", ".", "working directory of the process")
	ready := flag.String("ready", "http://127.0.0.1:8001/ready", "URL that answers 200 when the proxy is ready")
	cacheDir := flag.String("cache-dir", "", "compilation cache directory, passed as --cache-dir (required)")
	cold := flag.Bool("cold", false, "empty the cache directory before every start")
	runs := flag.Int("runs", 5, "number of starts")
	timeout := flag.Duration("timeout", 60*time.Second, "give up on a start after this long")
	flag.Parse()
	if *bin == "" || *cacheDir == "" {
		fmt.Fprintln(os.Stderr, "startup: -bin and -cache-dir are required; the remaining arguments go to the binary")
		os.Exit(2)
	}
	client := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	var times []time.Duration
	for i := 0; i < *runs; i++ {
		if *cold {
			if err := os.RemoveAll(*cacheDir); err != nil {
				die("emptying %s: %v", *cacheDir, err)
			}
		}
		d, err := once(client, *bin, *dir, *ready, *cacheDir, *timeout, flag.Args())
		if err != nil {
			die("start %d: %v", i+1, err)
		}
		times = append(times, d)
	}
	parts := make([]string, len(times))
	for i, d := range times {
		parts[i] = ms(d)
	}
	sorted := append([]time.Duration(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	fmt.Printf("median %s ms (runs: %s)\n", ms(sorted[len(sorted)/2]), strings.Join(parts, ", "))
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
