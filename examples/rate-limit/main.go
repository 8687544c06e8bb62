// Command rate-limit is a Proxy-Wasm HTTP filter that limits requests per
// client with a token bucket kept in the proxy's shared data, so every
// instance of the plugin (--concurrency N) draws from the same buckets.
//
// The client key is the value of the configured header (x-api-key by
// default) or, without it, the client's IP address (the source.address
// property). Each key has a bucket of max_tokens tokens; a request takes
// one, and a request that finds the bucket empty gets 429 with
// retry-after. Every fill_interval_ms, OnTick adds tokens_per_fill tokens
// to every bucket, up to max_tokens.
//
// Shared data layout (per vm_id; give each rate-limit plugin its own):
//
//	rate-limit/keys          every client key seen, one per line
//	rate-limit/bucket/<key>  tokens left, 8-byte little-endian
//	rate-limit/epoch         refills done so far, 8-byte little-endian
//
// Every update is a compare-and-swap (GetSharedData's cas given back to
// SetSharedData, retried on CAS_MISMATCH). Each instance's root context
// gets its own ticks, so a refill is claimed by advancing the shared epoch
// with a CAS: the first instance to tick in a period refills, the others
// see the epoch already there and skip. A bucket is only ever created by
// the instance that added its key to rate-limit/keys (a CAS on an existing
// entry), so two instances cannot both create it.
//
// Configuration (JSON, every field optional):
//
//	{"key_header": "x-api-key", "max_tokens": 3, "tokens_per_fill": 1, "fill_interval_ms": 1000}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

const (
	keysKey      = "rate-limit/keys"
	epochKey     = "rate-limit/epoch"
	bucketPrefix = "rate-limit/bucket/"
	// keysHeader starts rate-limit/keys, so the entry is never empty.
	keysHeader = "# rate-limit keys\n"
	// maxAttempts bounds every compare-and-swap loop.
	maxAttempts = 64
)

func main() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// config is the plugin configuration.
type config struct {
	KeyHeader      string `json:"key_header"`
	MaxTokens      uint64 `json:"max_tokens"`
	TokensPerFill  uint64 `json:"tokens_per_fill"`
	FillIntervalMs uint32 `json:"fill_interval_ms"`
}

func parseConfig(data []byte) (config, error) {
	c := config{KeyHeader: "x-api-key", MaxTokens: 3, TokensPerFill: 1, FillIntervalMs: 1000}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	switch {
	case c.KeyHeader == "" || c.KeyHeader != strings.ToLower(c.KeyHeader):
		return c, fmt.Errorf("key_header %q must be a non-empty lower-case header name", c.KeyHeader)
	case c.MaxTokens == 0:
		return c, errors.New("max_tokens must be positive")
	case c.TokensPerFill == 0:
		return c, errors.New("tokens_per_fill must be positive")
	case c.FillIntervalMs == 0:
		return c, errors.New("fill_interval_ms must be positive")
	}
	return c, nil
}

// pluginContext is one instance's root context: it owns the ticks and
// the metrics, and makes a limitContext per stream.
type pluginContext struct {
	types.DefaultPluginContext
	config config
	// ticks counts this root context's ticks, kept at or above the shared
	// epoch.
	ticks   uint64
	allowed proxywasm.MetricCounter
	limited proxywasm.MetricCounter
	refills proxywasm.MetricCounter
}

// OnPluginStart implements types.PluginContext.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("reading the plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogCriticalf("invalid plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.config = c
	// Create the shared entries before any traffic: from then on every
	// write to them is a compare-and-swap on an existing entry.
	if err := createIfMissing(keysKey, []byte(keysHeader)); err != nil {
		proxywasm.LogCriticalf("creating %s: %v", keysKey, err)
		return types.OnPluginStartStatusFailed
	}
	if err := createIfMissing(epochKey, encode(0)); err != nil {
		proxywasm.LogCriticalf("creating %s: %v", epochKey, err)
		return types.OnPluginStartStatusFailed
	}
	if v, _, err := proxywasm.GetSharedData(epochKey); err == nil {
		p.ticks = decode(v)
	}
	p.allowed = proxywasm.DefineCounterMetric("rate_limit.allowed")
	p.limited = proxywasm.DefineCounterMetric("rate_limit.limited")
	p.refills = proxywasm.DefineCounterMetric("rate_limit.refills")
	if err := proxywasm.SetTickPeriodMilliSeconds(c.FillIntervalMs); err != nil {
		proxywasm.LogCriticalf("setting the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("%d requests per key, %d more every %dms, keyed by %s or the client address",
		c.MaxTokens, c.TokensPerFill, c.FillIntervalMs, c.KeyHeader)
	return types.OnPluginStartStatusOK
}

// OnTick implements types.PluginContext: the first instance to tick in a
// period refills every bucket.
func (p *pluginContext) OnTick() {
	p.ticks++
	v, cas, err := proxywasm.GetSharedData(epochKey)
	if err != nil {
		proxywasm.LogErrorf("reading %s: %v", epochKey, err)
		return
	}
	if epoch := decode(v); p.ticks <= epoch {
		// Another instance already refilled for this tick.
		p.ticks = epoch
		return
	}
	if err := proxywasm.SetSharedData(epochKey, encode(p.ticks), cas); err != nil {
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			proxywasm.LogErrorf("advancing %s: %v", epochKey, err)
		}
		return
	}
	keys, _, err := proxywasm.GetSharedData(keysKey)
	if err != nil {
		proxywasm.LogErrorf("reading %s: %v", keysKey, err)
		return
	}
	for _, key := range strings.Split(string(keys), "\n") {
		if key == "" || strings.HasPrefix(key, "#") {
			continue
		}
		if err := p.refill(key); err != nil {
			proxywasm.LogErrorf("refilling %q: %v", key, err)
		}
	}
	p.refills.Increment(1)
}

// refill adds tokens_per_fill tokens to key's bucket, up to max_tokens.
func (p *pluginContext) refill(key string) error {
	for range maxAttempts {
		v, cas, err := proxywasm.GetSharedData(bucketPrefix + key)
		if err != nil {
			return err
		}
		tokens := decode(v)
		if tokens >= p.config.MaxTokens {
			return nil
		}
		tokens = min(p.config.MaxTokens, tokens+p.config.TokensPerFill)
		err = proxywasm.SetSharedData(bucketPrefix+key, encode(tokens), cas)
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return err
		}
	}
	return errors.New("too many conflicting updates")
}

// take takes a token from key's bucket, creating the bucket (full) the
// first time. It returns the tokens left and whether the request may go.
func (p *pluginContext) take(key string) (left uint64, ok bool, err error) {
	bucket := bucketPrefix + key
	for attempt := range maxAttempts {
		v, cas, err := proxywasm.GetSharedData(bucket)
		if errors.Is(err, types.ErrorStatusNotFound) {
			created, err := register(key)
			if err != nil {
				return 0, false, err
			}
			// Only the instance that registered the key creates its bucket.
			// Another one waits for it, unless that instance seems gone.
			if created || attempt >= maxAttempts/2 {
				if err := proxywasm.SetSharedData(bucket, encode(p.config.MaxTokens), 0); err != nil {
					return 0, false, err
				}
			}
			continue
		}
		if err != nil {
			return 0, false, err
		}
		tokens := decode(v)
		if tokens == 0 {
			return 0, false, nil
		}
		err = proxywasm.SetSharedData(bucket, encode(tokens-1), cas)
		if err == nil {
			return tokens - 1, true, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return 0, false, err
		}
	}
	return 0, false, errors.New("too many conflicting updates")
}

// register adds key to rate-limit/keys; created says this call added it.
func register(key string) (created bool, err error) {
	for range maxAttempts {
		list, cas, err := proxywasm.GetSharedData(keysKey)
		if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			return false, err
		}
		if len(list) == 0 {
			list = []byte(keysHeader)
		}
		if bytes.Contains(list, []byte("\n"+key+"\n")) {
			return false, nil
		}
		list = append(append(list, key...), '\n')
		err = proxywasm.SetSharedData(keysKey, list, cas)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return false, err
		}
	}
	return false, errors.New("too many conflicting updates")
}

// createIfMissing stores value under key unless the key exists.
func createIfMissing(key string, value []byte) error {
	_, _, err := proxywasm.GetSharedData(key)
	if errors.Is(err, types.ErrorStatusNotFound) {
		return proxywasm.SetSharedData(key, value, 0)
	}
	return err
}

func encode(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

func decode(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &limitContext{p: p}
}

// limitContext limits one request.
type limitContext struct {
	types.DefaultHttpContext
	p       *pluginContext
	decided bool
	left    uint64
}

// OnHttpRequestHeaders implements types.HttpContext: it takes a token or
// answers 429.
func (c *limitContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	key, err := c.clientKey()
	if err != nil {
		// No key at all: let the request through rather than lump every
		// such client into one bucket.
		proxywasm.LogErrorf("no client key: %v", err)
		return types.ActionContinue
	}
	left, ok, err := c.p.take(key)
	if err != nil {
		// Fail open: a shared-data fault must not take the service down.
		proxywasm.LogErrorf("rate limit for %q: %v; letting the request through", key, err)
		return types.ActionContinue
	}
	c.decided, c.left = true, left
	if ok {
		c.p.allowed.Increment(1)
		return types.ActionContinue
	}
	c.p.limited.Increment(1)
	proxywasm.LogDebugf("rate limited %q", key)
	retryAfter := strconv.FormatUint((uint64(c.p.config.FillIntervalMs)+999)/1000, 10)
	if err := proxywasm.SendHttpResponse(429,
		[][2]string{{"retry-after", retryAfter}, {"content-type", "text/plain"}},
		[]byte("rate limit exceeded\n"), -1); err != nil {
		proxywasm.LogErrorf("sending the 429: %v", err)
	}
	return types.ActionPause
}

// OnHttpResponseHeaders implements types.HttpContext: it tells the client
// its limit and what is left (on the 429 too).
func (c *limitContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if c.decided {
		_ = proxywasm.ReplaceHttpResponseHeader("x-ratelimit-limit", strconv.FormatUint(c.p.config.MaxTokens, 10))
		_ = proxywasm.ReplaceHttpResponseHeader("x-ratelimit-remaining", strconv.FormatUint(c.left, 10))
	}
	return types.ActionContinue
}

// clientKey is "key:<header value>" or "addr:<client IP>".
func (c *limitContext) clientKey() (string, error) {
	if v, err := proxywasm.GetHttpRequestHeader(c.p.config.KeyHeader); err == nil && v != "" {
		return "key:" + v, nil
	}
	addr, err := proxywasm.GetProperty([]string{"source", "address"})
	if err != nil {
		return "", fmt.Errorf("reading source.address: %w", err)
	}
	host := string(addr)
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return "", errors.New("empty source.address")
	}
	return "addr:" + host, nil
}
