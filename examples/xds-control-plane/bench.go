package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchFleet is bench/fleet.sh's measurement: n wasmproxy processes
// (binary) on loopback, each from a bootstrap with only
// dynamic_resources, join this control plane and get a listener with
// the json-validation plugin (plugin) and a cluster. Under load on all
// of them, the control plane pushes a new plugin configuration, then a
// new plugin module; it reports how long each proxy took to serve each
// (median and max), the failed requests, and each idle proxy's RSS.
func benchFleet(n int, binary, plugin string) error {
	plugin, err := filepath.Abs(plugin)
	if err != nil {
		return err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello from the server")
	})}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go up.Serve(upLn)
	defer up.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One range for the listeners (base+i) and the admin servers
	// (base+n+i), so that they cannot overlap.
	base, err := freePortRange(2 * n)
	if err != nil {
		return err
	}
	adminBase := base + n
	cp := NewControlPlane(ctx, Fleet{
		ListenAddr: fmt.Sprintf("127.0.0.1:%d", base), Upstream: upLn.Addr().String(),
		Plugin: plugin, Config: `{"requiredKeys": ["id", "token"]}`, PortPerNode: true,
	})
	cpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go cp.Serve(cpLn)
	defer cp.Stop()

	dir, err := os.MkdirTemp("", "fleet")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bootstrap, err := os.ReadFile("bootstrap.yaml")
	if err != nil {
		return err
	}
	_, cpPort, _ := net.SplitHostPort(cpLn.Addr().String())
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(os.Interrupt)
			p.Wait()
		}
	}()
	// Proxies join one at a time so that join order (and so the
	// listener port) is the index.
	for i := range n {
		cfg := strings.Replace(string(bootstrap), "port_value: 18001", "port_value: "+cpPort, 1)
		cfg = strings.Replace(cfg, "port_value: 0 }", fmt.Sprintf("port_value: %d }", adminBase+i), 1)
		path := filepath.Join(dir, fmt.Sprintf("proxy-%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return err
		}
		cmd := exec.Command(binary, "-c", path, "--service-node", fmt.Sprintf("proxy-%d", i), "-l", "warning", "--cache-dir", filepath.Join(dir, "cache"))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		if _, err := waitAnswer(proxyURL(base, i), `{"id": "x"}`, 403, 60*time.Second); err != nil {
			return fmt.Errorf("proxy %d: %w", i, err)
		}
	}
	var rss []int
	for _, p := range procs {
		rss = append(rss, rssKB(p.Process.Pid))
	}
	fmt.Printf("%d proxies serving; idle RSS per proxy: median %d KiB, max %d KiB\n", n, median(rss), slices.Max(rss))

	// Load: 2 keep-alive clients per proxy, each POSTing a body that
	// passes every version, counting anything but 200.
	var sent, failed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range n {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 10 * time.Second}
				for loadCtx.Err() == nil {
					resp, err := client.Post(proxyURL(base, i), "application/json", strings.NewReader(`{"id": "x", "token": "y"}`))
					sent.Add(1)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			}()
		}
	}

	// 1. A new configuration: {"id"} alone is accepted from now on.
	start := time.Now()
	if _, err := cp.Update(func(f *Fleet) { f.Config = `{"requiredKeys": ["id"]}` }); err != nil {
		return err
	}
	configTimes, err := each(n, func(i int) (time.Duration, error) {
		if _, err := waitAnswer(proxyURL(base, i), `{"id": "x"}`, 200, 60*time.Second); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	})
	if err != nil {
		return err
	}
	// 2. A new module (the same build under a new path): each proxy's
	// reload generation moves when it has swapped the plugin.
	gens := make([]uint64, n)
	for i := range n {
		if gens[i], err = generation(adminBase + i); err != nil {
			return err
		}
	}
	code, err := os.ReadFile(plugin)
	if err != nil {
		return err
	}
	rolled := filepath.Join(dir, "json-validation-v2.wasm")
	if err := os.WriteFile(rolled, code, 0o644); err != nil {
		return err
	}
	start = time.Now()
	if _, err := cp.Update(func(f *Fleet) { f.Plugin = rolled }); err != nil {
		return err
	}
	moduleTimes, err := each(n, func(i int) (time.Duration, error) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			g, err := generation(adminBase + i)
			if err == nil && g > gens[i] {
				return time.Since(start), nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return 0, fmt.Errorf("proxy %d never applied the new module", i)
	})
	if err != nil {
		return err
	}
	stopLoad()
	wg.Wait()
	report := func(what string, ds []time.Duration) {
		slices.Sort(ds)
		fmt.Printf("%s: all %d serving it after median %v, max %v\n", what, n, ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	report("new plugin configuration", configTimes)
	report("new plugin module", moduleTimes)
	fmt.Printf("requests under load: %d sent, %d failed\n", sent.Load(), failed.Load())
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed during the rollout", failed.Load())
	}
	return nil
}

func proxyURL(base, i int) string { return fmt.Sprintf("http://127.0.0.1:%d/", base+i) }

// each runs f for 0..n-1 concurrently and collects the results.
func each(n int, f func(int) (time.Duration, error)) ([]time.Duration, error) {
	out := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); out[i], errs[i] = f(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// waitAnswer POSTs body to url until it answers status, bounded by
// limit, and returns how long that took.
func waitAnswer(url, body string, status int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	for time.Since(start) < limit {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return time.Since(start), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s never answered %d to %s", url, status, body)
}

func generation(adminPort int) (uint64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/reload_status", adminPort))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Generation uint64 `json:"generation"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.Generation, err
}

// freePortRange finds n consecutive free ports on 127.0.0.1, below
// Linux's ephemeral range (32768 and up): ports taken from that range
// are free when checked, but the load's own client connections (and
// anything else on the machine) get their source ports there, and a
// proxy that joins later then finds its listener port in use.
func freePortRange(n int) (int, error) {
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(12000-n)
		ok := true
		for i := 0; ok && i < n; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports", n)
}

func rssKB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func median(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
