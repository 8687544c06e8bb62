package main

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

const testConfig = `{"key_header": "x-api-key", "max_tokens": 3, "tokens_per_fill": 1, "fill_interval_ms": 1000}`

func load(t *testing.T, opts ...wasmtest.Option) *wasmtest.Plugin {
	t.Helper()
	return wasmtest.Load(t, wasmtest.Build(t, "."), append([]wasmtest.Option{wasmtest.PluginConfig(testConfig)}, opts...)...)
}

// request sends one request with the given headers and checks the
// plugin's answer: 200 through the upstream with remaining tokens left, or
// its own 429.
func request(t *testing.T, p *wasmtest.Plugin, info wasmtest.StreamOption, wantStatus int, wantRemaining string, extra ...string) {
	t.Helper()
	var s *wasmtest.HTTPStream
	if info != nil {
		s = p.NewHTTPStream(info)
	} else {
		s = p.NewHTTPStream()
	}
	r := s.SendRequestHeaders(wasmtest.Request("GET", "/", extra...), true)
	if wantStatus == 200 {
		r.ExpectContinue()
		s.ExpectNoLocalResponse()
		s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
	} else {
		r.ExpectPause()
		s.ExpectLocalResponse(429, "rate limit exceeded\n")
		s.ExpectClientHeader("retry-after", "1")
		if s.Upstream().Headers != nil {
			t.Errorf("a limited request reached the upstream")
		}
	}
	s.ExpectClientStatus(wantStatus)
	s.ExpectClientHeader("x-ratelimit-limit", "3")
	s.ExpectClientHeader("x-ratelimit-remaining", wantRemaining)
	s.Complete()
}

func TestTokenBucket(t *testing.T) {
	p := load(t)
	if got := p.TickPeriod().Milliseconds(); got != 1000 {
		t.Fatalf("tick period %dms, want 1000", got)
	}
	alice := []string{"x-api-key", "alice"}
	request(t, p, nil, 200, "2", alice...)
	request(t, p, nil, 200, "1", alice...)
	request(t, p, nil, 200, "0", alice...)
	request(t, p, nil, 429, "0", alice...)
	request(t, p, nil, 429, "0", alice...)
	// Another key has its own bucket.
	request(t, p, nil, 200, "2", "x-api-key", "bob")

	p.Tick() // one token back
	request(t, p, nil, 200, "0", alice...)
	request(t, p, nil, 429, "0", alice...)

	if n := p.Advance(5 * p.TickPeriod()); n != 5 {
		t.Fatalf("Advance delivered %d ticks, want 5", n)
	}
	// Refills stop at max_tokens.
	request(t, p, nil, 200, "2", alice...)
	request(t, p, nil, 200, "1", alice...)
	request(t, p, nil, 200, "0", alice...)
	request(t, p, nil, 429, "0", alice...)

	p.ExpectMetric("rate_limit.allowed", 8)
	p.ExpectMetric("rate_limit.limited", 4)
	p.ExpectMetric("rate_limit.refills", 6)
	if v, ok := p.SharedData("rate-limit/bucket/key:bob"); !ok || binary.LittleEndian.Uint64(v) != 3 {
		t.Errorf("bob's bucket = %v (found %v), want 3 tokens (refilled)", v, ok)
	}
	if keys, _ := p.SharedData("rate-limit/keys"); string(keys) != "# rate-limit keys\nkey:alice\nkey:bob\n" {
		t.Errorf("rate-limit/keys = %q", keys)
	}
}

// Without the key header the client address is the key.
func TestClientAddressKey(t *testing.T) {
	p := load(t)
	from := func(addr string) wasmtest.StreamOption {
		return wasmtest.WithInfo(func(i *filter.StreamInfo) { i.DownstreamAddr = netip.MustParseAddrPort(addr) })
	}
	request(t, p, from("10.0.0.1:1111"), 200, "2")
	request(t, p, from("10.0.0.1:2222"), 200, "1") // another connection, same client
	request(t, p, from("10.0.0.1:3333"), 200, "0")
	request(t, p, from("10.0.0.1:4444"), 429, "0")
	request(t, p, from("[2001:db8::1]:5555"), 200, "2")
	request(t, p, from("10.0.0.2:1111"), 200, "2")
	// A key header wins over the address.
	request(t, p, from("10.0.0.1:5555"), 200, "2", "x-api-key", "k")
	for _, k := range []string{"addr:10.0.0.1", "addr:2001:db8::1", "addr:10.0.0.2", "key:k"} {
		if _, ok := p.SharedData("rate-limit/bucket/" + k); !ok {
			t.Errorf("no bucket %q", k)
		}
	}
}

// Two instances (as with --concurrency 2) take from the same buckets, and
// a tick, delivered to both root contexts, refills once.
func TestInstancesShareBuckets(t *testing.T) {
	p := load(t, wasmtest.PoolSize(2))
	k := []string{"x-api-key", "shared"}
	request(t, p, nil, 200, "2", k...)
	request(t, p, nil, 200, "1", k...)
	request(t, p, nil, 200, "0", k...)
	request(t, p, nil, 429, "0", k...)
	request(t, p, nil, 429, "0", k...)
	p.Tick()
	p.ExpectMetric("rate_limit.refills", 1)
	request(t, p, nil, 200, "0", k...)
	request(t, p, nil, 429, "0", k...)
	p.Tick()
	p.Tick()
	p.ExpectMetric("rate_limit.refills", 3)
	request(t, p, nil, 200, "1", k...)
	request(t, p, nil, 200, "0", k...)
	request(t, p, nil, 429, "0", k...)
}

// Buckets live in shared data: what another plugin instance (or another
// worker) writes there counts.
func TestBucketInSharedData(t *testing.T) {
	p := load(t)
	request(t, p, nil, 200, "2", "x-api-key", "k")
	p.SetSharedData("rate-limit/bucket/key:k", binary.LittleEndian.AppendUint64(nil, 0))
	request(t, p, nil, 429, "0", "x-api-key", "k")
	p.SetSharedData("rate-limit/bucket/key:k", binary.LittleEndian.AppendUint64(nil, 1))
	request(t, p, nil, 200, "0", "x-api-key", "k")
}

func TestRetryAfterFollowsTheInterval(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"max_tokens": 1, "fill_interval_ms": 2500}`))
	s := p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-api-key", "k"), true).ExpectContinue()
	s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
	s.Complete()
	s = p.NewHTTPStream()
	s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-api-key", "k"), true).ExpectPause()
	s.ExpectLocalResponse(429, "rate limit exceeded\n")
	s.ExpectClientHeader("retry-after", "3")
	s.Complete()
}

func TestBadConfigurationIsRefused(t *testing.T) {
	wasm := wasmtest.Build(t, ".")
	for _, cfg := range []string{`[]`, `{"max_tokens": 0}`, `{"tokens_per_fill": 0}`, `{"fill_interval_ms": 0}`, `{"key_header": "X-Key"}`, `{"burst": 3}`} {
		failures := wasmtest.Capture(func(t wasmtest.TB) { wasmtest.Load(t, wasm, wasmtest.PluginConfig(cfg)) })
		if len(failures) == 0 || !strings.Contains(strings.Join(failures, "\n"), "invalid plugin configuration") {
			t.Errorf("configuration %s: load failures %q, want the plugin's refusal", cfg, failures)
		}
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
