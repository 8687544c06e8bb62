package wasmtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Responder answers HTTP calls to a cluster without the test's help; see
// Cluster.
type Responder func(call *HTTPCall) CallResponse

// CallResponse is an answer to an HTTP call.
type CallResponse struct {
	Status   int
	Headers  Headers
	Body     []byte
	Trailers Headers
	// Fail makes the call fail as a reset connection would: the plugin's
	// OnHttpCallResponse sees zero headers and the host reports status 11
	// ("reset") — Status and the rest are ignored.
	Fail bool
}

// Cluster declares an upstream cluster the plugin may call with
// proxywasm.DispatchHttpCall. Calls to undeclared clusters fail with
// BAD_ARGUMENT, as in Envoy. With answer nil the test answers each call
// (Plugin.NextHTTPCall, HTTPCall.Respond); otherwise answer does, and
// every Send, Tick and Enqueue waits until the reply has reached the
// plugin before returning.
func Cluster(name string, answer Responder) Option {
	return func(o *settings) {
		if o.clusters == nil {
			o.clusters = map[string]Responder{}
		}
		o.clusters[name] = answer
	}
}

// AnyCluster declares every cluster name the plugin may call, each
// answered by the test as Cluster(name, nil) would be. It is for
// harnesses that, like proxy-wasm-go-sdk's emulator, do not know the
// plugin's clusters in advance (package wasmtest/proxytest).
func AnyCluster() Option { return func(o *settings) { o.anyCluster = true } }

// HTTPCall is a call the plugin made (proxy_http_call), as the cluster
// received it.
type HTTPCall struct {
	Cluster  string
	Headers  *filter.HeaderMap
	Body     []byte
	Trailers *filter.HeaderMap
	// Timeout is the timeout the plugin asked for; 0 means none.
	Timeout time.Duration

	p      *Plugin
	stream *HTTPStream // the stream whose callback made the call, if any
	reply  chan CallResponse
	// answered is set by Respond (test goroutine) or the responder.
	answered bool
}

// Stream is the HTTP stream whose callback made the call; nil for a
// call the plugin context made (from a tick, a queue or another call's
// reply).
func (c *HTTPCall) Stream() *HTTPStream { return c.stream }

func (c *HTTPCall) String() string {
	method, _ := c.Headers.Get(":method")
	path, _ := c.Headers.Get(":path")
	return fmt.Sprintf("%s %s on cluster %q", method, path, c.Cluster)
}

// calloutState counts callouts so the harness knows when every reply the
// plugin will get has been delivered.
type calloutState struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	started int           // accepted by proxy_http_call
	done    int           // reply delivered (or dropped)
	waiting int           // invoked on a cluster the test answers, not answered yet
	calls   []*HTTPCall
	// startedBy is the stream current when each call started (nil for
	// the plugin context), in the order they started.
	startedBy []*HTTPStream
	claimed   int // calls handed out by NextHTTPCall
	refused   map[string]int
	closed    bool
}

func (c *calloutState) signal() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

func (c *calloutState) wait() <-chan struct{} {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

func (c *calloutState) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, call := range c.calls {
		if !call.answered {
			call.answered = true
			call.reply <- CallResponse{Fail: true}
		}
	}
	c.signal()
}

// testUpstreams is the proxy side of callouts: the clusters the test
// declared.
type testUpstreams struct{ p *Plugin }

func (u *testUpstreams) HasCluster(name string) bool {
	_, ok := u.p.set.clusters[name]
	if u.p.set.anyCluster {
		ok = true
	}
	if _, grpc := u.p.set.grpcClusters[name]; grpc {
		ok = true
	}
	if !ok {
		c := &u.p.callouts
		c.mu.Lock()
		if c.refused == nil {
			c.refused = map[string]int{}
		}
		c.refused[name]++
		c.mu.Unlock()
	}
	return ok
}

func (u *testUpstreams) HTTPCall(ctx context.Context, cluster string, headers []filter.Pair, body []byte, trailers []filter.Pair) (*filter.CalloutResponse, error) {
	p := u.p
	call := &HTTPCall{
		Cluster: cluster, Headers: filter.NewHeaderMap(headers...), Body: body,
		Trailers: filter.NewHeaderMap(trailers...), p: p, reply: make(chan CallResponse, 1),
	}
	if dl, ok := ctx.Deadline(); ok {
		call.Timeout = time.Until(dl).Round(time.Millisecond)
	}
	answer := p.set.clusters[cluster]
	c := &p.callouts
	c.mu.Lock()
	if n := len(c.calls); n < len(c.startedBy) {
		// Calls reach here in the order they started: the harness
		// settles each callback's calls before the next callback runs.
		call.stream = c.startedBy[n]
	}
	c.calls = append(c.calls, call)
	if c.closed {
		call.answered = true
		call.reply <- CallResponse{Fail: true}
	} else if answer != nil {
		call.answered = true
		call.reply <- answer(call)
	} else {
		c.waiting++
	}
	c.signal()
	c.mu.Unlock()

	var r CallResponse
	select {
	case r = <-call.reply:
	case <-ctx.Done():
		// Envoy's async client answers a timeout with a local 504.
		c.mu.Lock()
		if !call.answered {
			call.answered = true
			c.waiting--
		}
		c.mu.Unlock()
		return &filter.CalloutResponse{Headers: []filter.Pair{{Key: ":status", Value: "504"}}, Body: []byte("upstream request timeout")}, nil
	}
	if r.Fail {
		return nil, errors.New("wasmtest: call failed (reset)")
	}
	resp := &filter.CalloutResponse{Headers: []filter.Pair{{Key: ":status", Value: strconv.Itoa(r.Status)}}, Body: r.Body, Trailers: r.Trailers}
	for _, h := range r.Headers {
		resp.Headers = append(resp.Headers, filter.Pair{Key: strings.ToLower(h.Key), Value: h.Value})
	}
	return resp, nil
}

func (u *testUpstreams) OpenStream(ctx context.Context, cluster string, headers []filter.Pair) (filter.UpstreamStream, error) {
	handler := u.p.set.grpcClusters[cluster]
	if handler == nil {
		return nil, fmt.Errorf("wasmtest: cluster %q serves no gRPC (declare it with GrpcCluster)", cluster)
	}
	return u.p.openGrpc(ctx, cluster, headers, handler), nil
}

func (p *Plugin) onHTTPCallStarted() {
	p.mu.Lock()
	current := p.current
	p.mu.Unlock()
	c := &p.callouts
	c.mu.Lock()
	c.startedBy = append(c.startedBy, current)
	c.started++
	c.signal()
	c.mu.Unlock()
}

func (p *Plugin) onHTTPCallDone() {
	c := &p.callouts
	c.mu.Lock()
	c.done++
	c.signal()
	c.mu.Unlock()
}

// settleCallouts waits until every call the plugin started is either
// waiting for the test's answer or answered and delivered, bounded by the
// timeout. It reports false on timeout.
func (p *Plugin) settleCallouts() bool {
	deadline := time.Now().Add(p.waitBound())
	c := &p.callouts
	for {
		c.mu.Lock()
		settled := c.started == c.done+c.waiting
		ch := c.wait()
		c.mu.Unlock()
		if settled {
			return true
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			return false
		}
	}
}

func (p *Plugin) waitBound() time.Duration {
	if p.set.timeout <= 0 {
		return time.Hour
	}
	return p.set.timeout
}

// HTTPCalls lists every call the plugin made so far, in order.
func (p *Plugin) HTTPCalls() []*HTTPCall {
	p.settleCallouts()
	c := &p.callouts
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*HTTPCall(nil), c.calls...)
}

// NextHTTPCall returns the next call the plugin made that NextHTTPCall has
// not returned yet, waiting for it up to the timeout; it fails the test
// when none comes.
func (p *Plugin) NextHTTPCall() *HTTPCall {
	p.t.Helper()
	deadline := time.Now().Add(p.waitBound())
	c := &p.callouts
	for {
		c.mu.Lock()
		if c.claimed < len(c.calls) {
			call := c.calls[c.claimed]
			c.claimed++
			c.mu.Unlock()
			return call
		}
		ch := c.wait()
		c.mu.Unlock()
		select {
		case <-ch:
			continue
		case <-time.After(time.Until(deadline)):
		}
		break
	}
	p.t.Fatalf("wasmtest: plugin %s: expected an HTTP call, but the plugin made none within %v%s\nrecent plugin logs:\n%s",
		p.label, p.waitBound(), p.refusedNote(), recentLogs(p.logs.snapshot(), 20))
	return nil
}

// ExpectNoHTTPCall fails the test if the plugin made a call NextHTTPCall
// has not returned.
func (p *Plugin) ExpectNoHTTPCall() {
	p.t.Helper()
	p.settleCallouts()
	c := &p.callouts
	c.mu.Lock()
	extra := c.calls[c.claimed:]
	c.mu.Unlock()
	if len(extra) > 0 {
		p.t.Errorf("wasmtest: plugin %s: expected no HTTP call, got %s", p.label, extra[0])
	}
}

func (p *Plugin) refusedNote() string {
	c := &p.callouts
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.refused) == 0 {
		return ""
	}
	names := make([]string, 0, len(c.refused))
	for n := range c.refused {
		names = append(names, strconv.Quote(n))
	}
	sort.Strings(names)
	return fmt.Sprintf(" (it asked for undeclared cluster %s, which the host refused with BAD_ARGUMENT: declare it with wasmtest.Cluster)", strings.Join(names, ", "))
}

// Respond answers the call with status, headers and body, and returns
// once the plugin's OnHttpCallResponse has run and what it asked of its
// streams (resume, local response) has been applied.
func (c *HTTPCall) Respond(status int, headers Headers, body []byte) {
	c.p.t.Helper()
	c.answer(CallResponse{Status: status, Headers: headers, Body: body})
}

// RespondWith answers the call with r: Respond with trailers, or Fail.
func (c *HTTPCall) RespondWith(r CallResponse) {
	c.p.t.Helper()
	c.answer(r)
}

// Fail makes the call fail as a reset upstream connection would.
func (c *HTTPCall) Fail() {
	c.p.t.Helper()
	c.answer(CallResponse{Fail: true})
}

func (c *HTTPCall) answer(r CallResponse) {
	p := c.p
	p.t.Helper()
	st := &p.callouts
	st.mu.Lock()
	if c.answered {
		st.mu.Unlock()
		p.t.Fatalf("wasmtest: plugin %s: the call %s was already answered", p.label, c)
		return
	}
	c.answered = true
	st.waiting--
	st.signal()
	st.mu.Unlock()
	c.reply <- r
	if !p.settleCallouts() {
		p.t.Fatalf("wasmtest: plugin %s: the reply to %s was not delivered within %v (is proxy_on_http_call_response stuck?)\nrecent plugin logs:\n%s",
			p.label, c, p.waitBound(), recentLogs(p.logs.snapshot(), 20))
	}
	p.afterAsync()
}
