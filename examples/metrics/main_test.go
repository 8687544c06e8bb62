package main

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

const (
	inFlight  = "httpmetrics.requests_in_flight"
	bodyBytes = "httpmetrics.response_body_bytes"
	duration  = "httpmetrics.request_duration_ms"
)

// exchange sends a request and the upstream's response in chunks.
func exchange(t *testing.T, p *wasmtest.Plugin, method string, chunks ...string) {
	t.Helper()
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request(method, "/"), true).ExpectContinue()
	s.SendResponseHeaders(wasmtest.Response(200), len(chunks) == 0).ExpectContinue()
	for i, c := range chunks {
		s.SendResponseBody([]byte(c), i == len(chunks)-1).ExpectContinue()
	}
	s.ExpectClientStatus(200)
	s.Complete()
}

func histogram(t *testing.T, p *wasmtest.Plugin, name string) (count uint64, sum float64) {
	t.Helper()
	h, ok := p.Histogram(name)
	if !ok {
		t.Fatalf("no histogram %s", name)
	}
	return h.Count, h.Sum
}

func TestCountsMethodsAndBodySizes(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"} {
		p.ExpectMetric("httpmetrics.requests."+m+".total", 0)
	}
	p.ExpectMetric(inFlight, 0)

	exchange(t, p, "GET", "hel", "lo\n")  // 6 bytes in two chunks
	exchange(t, p, "GET", "0123456789")   // 10
	exchange(t, p, "POST", "created")     // 7
	exchange(t, p, "HEAD")                // no body
	exchange(t, p, "PURGE", "purged\n")   // 7, an unlisted method
	exchange(t, p, "get", "lower-case\n") // 11, methods are case-sensitive

	p.ExpectMetric("httpmetrics.requests.GET.total", 2)
	p.ExpectMetric("httpmetrics.requests.POST.total", 1)
	p.ExpectMetric("httpmetrics.requests.HEAD.total", 1)
	p.ExpectMetric("httpmetrics.requests.OTHER.total", 2)
	p.ExpectMetric("httpmetrics.requests.PUT.total", 0)
	p.ExpectMetric(inFlight, 0)
	if n, sum := histogram(t, p, bodyBytes); n != 6 || sum != 41 {
		t.Errorf("%s: %d samples summing %v, want 6 summing 41", bodyBytes, n, sum)
	}
	h, _ := p.Histogram(bodyBytes)
	// Envoy's default bounds 0.5, 1, 5, 10, 25: 0 | 6 | 10, 7, 7 | 11.
	for i, want := range []uint64{1, 1, 1, 5, 6} {
		if h.Buckets[i] != want {
			t.Errorf("%s bucket le=%v holds %d, want %d", bodyBytes, h.Bounds[i], h.Buckets[i], want)
		}
	}
	if n, _ := histogram(t, p, duration); n != 6 {
		t.Errorf("%s: %d samples, want 6", duration, n)
	}
}

// The gauge follows streams as they start and end, resets included.
func TestInFlightGauge(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	a, b := p.NewHTTPStream(), p.NewHTTPStream()
	a.SendRequestHeaders(wasmtest.Request("GET", "/a"), true).ExpectContinue()
	p.ExpectMetric(inFlight, 1)
	b.SendRequestHeaders(wasmtest.Request("POST", "/b"), false).ExpectContinue()
	p.ExpectMetric(inFlight, 2)
	b.Reset() // the client went away mid-request
	p.ExpectMetric(inFlight, 1)
	a.SendResponseHeaders(wasmtest.Response(200), false).ExpectContinue()
	a.SendResponseBody([]byte("ok"), true).ExpectContinue()
	p.ExpectMetric(inFlight, 1) // done only once the stream ends
	a.Complete()
	p.ExpectMetric(inFlight, 0)
	if n, sum := histogram(t, p, bodyBytes); n != 2 || sum != 2 {
		t.Errorf("%s: %d samples summing %v, want 2 (the reset one at 0) summing 2", bodyBytes, n, sum)
	}
}

// Two instances add to the same stats.
func TestInstancesShareMetrics(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PoolSize(2))
	for range 4 {
		exchange(t, p, "DELETE", "gone")
	}
	p.ExpectMetric("httpmetrics.requests.DELETE.total", 4)
	if n, sum := histogram(t, p, bodyBytes); n != 4 || sum != 16 {
		t.Errorf("%s: %d samples summing %v, want 4 summing 16", bodyBytes, n, sum)
	}
}

// TestCases runs cases.yaml, the checks `wasmproxy plugin test main.wasm
// cases.yaml` makes.
func TestCases(t *testing.T) {
	f, err := wasmtest.ReadCaseFile("cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wasm := wasmtest.Build(t, ".")
	for i, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) { f.RunCase(t, wasm, i) })
	}
}
