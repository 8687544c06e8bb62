package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// procSample is what the leak test can see of the proxy from outside:
// /proc/PID/status VmRSS and Threads, the open descriptors in
// /proc/PID/fd, and from the admin's /stats the goroutine count
// (server.goroutines) and the live Go heap (server.memory_allocated),
// which the proxy samples once a second.
type procSample struct {
	rssKiB, threads, fds int
	goroutines, heap     int
}

func (s procSample) String() string {
	return fmt.Sprintf("RSS %d KiB, %d threads, %d fds, %d goroutines, heap %d KiB", s.rssKiB, s.threads, s.fds, s.goroutines, s.heap>>10)
}

func sampleProc(t *testing.T, pid int) procSample {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the proxy's /proc status: %v", err)
	}
	var s procSample
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			s.rssKiB = n
		case "Threads":
			s.threads = n
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the proxy's /proc fd: %v", err)
	}
	s.fds = len(fds)
	return s
}

// TestLeaks drives as many failing requests as fit in about 20 s (3 s
// with -short, WASMPROXY_LEAK_SECONDS to override) through the real proxy and the chaos plugin: panics under
// FAIL_RELOAD (each one a trap, an instance closed and a new one
// instantiated) and under FAIL_CLOSED. Then, with the clients gone, the
// proxy's RSS, threads and descriptors must come back to the baseline
// taken after a warm-up with the same concurrency, within a tolerance,
// in a bounded wait. The RSS tolerance (+64 MiB or +50%, whichever is
// larger) catches any per-failure leak above ~6 KiB over 10,000
// failures; one leaked Go instance alone is megabytes.
func TestLeaks(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	wasmPath := plugin(t, "e2e/testdata/chaos")
	upPort := okServer(t)

	reload := &chaosListener{name: "reload", policy: "FAIL_RELOAD", backoff: "0.001s"}
	closed := &chaosListener{name: "closed", policy: "FAIL_CLOSED"}
	adminPort := freePort(t)
	in, admin := startChaos(t, chaosConfig(t, []*chaosListener{reload, closed}, upPort, adminPort), wasmPath, adminPort)
	pid := in.cmd.Process.Pid
	stat := func(name string) int { return adminStat(t, admin, name) }

	sample := func() procSample {
		s := sampleProc(t, pid)
		s.goroutines, s.heap = stat("server.goroutines"), stat("server.memory_allocated")
		return s
	}

	const workers = 8 // 7 on the FAIL_RELOAD listener, 1 on FAIL_CLOSED
	var failed, failedReload, ok, transport atomic.Int64
	var badMu sync.Mutex
	bad := map[string]int{}
	// storm sends x-chaos: panic requests from all workers until stop.
	storm := func(d time.Duration) {
		tr := &http.Transport{MaxIdleConnsPerHost: workers}
		client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		defer tr.CloseIdleConnections()
		stop := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			l := reload
			if w == workers-1 {
				l = closed
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := fmt.Sprintf("http://127.0.0.1:%d/", l.port)
				for time.Now().Before(stop) {
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("x-chaos", "panic")
					resp, err := client.Do(req)
					if err != nil {
						transport.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 503:
						failed.Add(1)
						if l == reload {
							failedReload.Add(1)
						}
					case 200:
						ok.Add(1) // must not happen: every request panics
					default:
						badMu.Lock()
						bad[fmt.Sprintf("%s %d", l.name, resp.StatusCode)]++
						badMu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
	}

	// Warm-up with the same concurrency, so pools, buffers, the Go heap
	// and the thread count settle before the baseline is taken.
	storm(2 * time.Second)
	time.Sleep(2 * time.Second) // the server.* gauges refresh every second
	base := sample()
	warmFailed, warmReload := failed.Load(), failedReload.Load()
	trapsBefore := stat("wasm.reload.runtime_errors") + stat("wasm.closed.runtime_errors")
	reloadsBefore := stat("wasm.reload.vm_reload_success")

	d := 20 * time.Second
	if testing.Short() {
		d = 3 * time.Second
	}
	if v, err := strconv.Atoi(os.Getenv("WASMPROXY_LEAK_SECONDS")); err == nil && v > 0 {
		d = time.Duration(v) * time.Second // a longer storm by hand, e.g. 150 for 10,000 traps
	}
	start := time.Now()
	storm(d)
	elapsed := time.Since(start)
	peak := sample()
	n, nReload := failed.Load()-warmFailed, failedReload.Load()-warmReload
	traps := stat("wasm.reload.runtime_errors") + stat("wasm.closed.runtime_errors") - trapsBefore
	reloads := stat("wasm.reload.vm_reload_success") - reloadsBefore
	t.Logf("%d failing requests (503) in %v (%.0f/s), %d of them on FAIL_RELOAD: %d traps, %d instance reloads, %d backoff refusals in all; %d transport errors",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), nReload, traps, reloads, stat("wasm.reload.vm_reload_backoff"), transport.Load())
	t.Logf("baseline: %v; right after: %v", base, peak)
	if ok.Load() != 0 || len(bad) != 0 {
		t.Errorf("panicking requests answered 200 %d times, other statuses %v; want 503 only", ok.Load(), bad)
	}
	if !testing.Short() && n < 1000 {
		t.Errorf("only %d failing requests in %v: the proxy is stuck", n, elapsed)
	}
	if traps == 0 || reloads == 0 {
		t.Errorf("traps = %d, reloads = %d: the storm did not exercise FAIL_RELOAD", traps, reloads)
	}

	// The proxy is still healthy: the FAIL_RELOAD listener serves.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", reload.port))
	if err != nil {
		t.Fatalf("after the storm: %v\n%s", err, lastLines(in.Logs(), 20))
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after the storm, a good request on the FAIL_RELOAD listener = %d, want 200", resp.StatusCode)
	}

	within := func(s procSample) bool {
		return s.rssKiB <= max(base.rssKiB*3/2, base.rssKiB+64<<10) &&
			s.threads <= base.threads+8 && s.fds <= base.fds+4 &&
			s.goroutines <= base.goroutines+16 && s.heap <= max(base.heap*3/2, base.heap+32<<20)
	}
	var last procSample
	deadline := time.Now().Add(20 * time.Second)
	for {
		last = sample()
		if within(last) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d failures the proxy did not return to its baseline within 20 s:\nbaseline %v\nnow      %v\n(tolerance: RSS +50%% or +64 MiB, threads +8, fds +4, goroutines +16, heap +50%% or +32 MiB)", n, base, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("after: %v (RSS %+.1f%%, threads %+d, fds %+d, goroutines %+d vs baseline)", last,
		(float64(last.rssKiB)/float64(base.rssKiB)-1)*100, last.threads-base.threads, last.fds-base.fds, last.goroutines-base.goroutines)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
