package filterchain

import (
	"strconv"
	"sync/atomic"

	"github.com/wasmproxy/wasmproxy/filter"
)

// HTTPHost is what the engine asks of the stream that owns it. The
// engine calls it on the owner's goroutine only.
type HTTPHost interface {
	// DeliverHeaders, DeliverData and DeliverTrailers hand what passed
	// the last filter of dir to the next hop: the router for the request,
	// the client for the response. DeliverData gets a slice it owns.
	DeliverHeaders(dir filter.Direction, h *filter.HeaderMap, end bool)
	DeliverData(dir filter.Direction, b []byte, end bool)
	DeliverTrailers(dir filter.Direction, t *filter.HeaderMap)
	// SendLocalReply answers the client instead of the upstream: a filter
	// asked for it, or data a filter buffered passed the buffer limit. The
	// host does its own bookkeeping, then either runs the reply through
	// the response filters with HTTP.LocalReply or, once the response has
	// started, resets the stream.
	SendLocalReply(status int, body []byte, headers []filter.Pair, details string)
	// Reset ends the stream abruptly (a filter asked for it); the host
	// stops both directions (HTTP.Stop).
	Reset(details string)
	// PauseSource stops reading dir's source (the client's body for the
	// request, the upstream's for the response): data a filter holds in
	// watermark mode passed the buffer limit. ResumeSource undoes it once
	// no filter of dir holds more than the limit.
	PauseSource(dir filter.Direction)
	ResumeSource(dir filter.Direction)
	// BufferOverflow reports that data a filter buffered passed the limit
	// outside watermark mode. The engine has already halted iteration and
	// queued Envoy's answer (413 for the request, 500 for the response);
	// the host counts it.
	BufferOverflow(dir filter.Direction)
	// Done reports that the stream has ended (response complete, or
	// reset): queued actions are dropped, and a local reply's body is not
	// sent after its headers ended the response.
	Done() bool
}

// HTTPObserver sees what the engine decides that the host's methods do
// not show. Filter indexes are in configuration order. Its methods run
// on the owner's goroutine.
type HTTPObserver interface {
	// HeldData: data (n bytes, or an empty end of stream) reached filter
	// i, which stopped all iteration in its headers callback with stop, so
	// it waits before the filter, which is not called.
	HeldData(dir filter.Direction, i, n int, stop filter.HeadersStatus)
	// HeldTrailers: trailers reached filter i before it let the headers
	// go on; they wait there.
	HeldTrailers(dir filter.Direction, i int)
	// OverLimit: the held bytes at filter i passed the buffer limit;
	// watermark says the source pauses instead of the stream failing.
	OverLimit(dir filter.Direction, i, held, limit int, watermark bool)
	// Continued: filter i's Continue(dir) is being applied.
	Continued(dir filter.Direction, i int)
	// LocalReplied: filter i's SendLocalReply is being applied, before
	// the host's SendLocalReply.
	LocalReplied(i, status int, body []byte, headers []filter.Pair, details string)
}

// HTTP runs one HTTP stream's filters: request data in configuration
// order, response data in reverse, with Envoy's stop/continue/buffer and
// watermark semantics (FilterManager in Envoy's
// source/common/http/filter_manager.cc). Its zero value is unusable; the
// owner embeds it and calls Init once.
type HTTP struct {
	// The stream's header maps, which filters see through their
	// callbacks. The owner sets ReqHeaders before Init (filters may read
	// it as soon as they are made); FeedHeaders and FeedTrailers set the
	// others as they arrive.
	ReqHeaders, ReqTrailers, RespHeaders, RespTrailers *filter.HeaderMap

	host     HTTPHost
	obs      HTTPObserver
	info     *filter.StreamInfo
	filters  []filter.StreamFilter
	cbs      []callbacks
	st       []filterState // dec's then enc's
	dec, enc chain
	// added: a filter created dir's trailers (AddRequestTrailers) and they
	// have not yet been attached to the end of the data.
	added [2]bool
	// haltRequested is set the moment a filter asks for a local reply or
	// a reset (from any goroutine), so that iteration stops before the
	// action is applied.
	haltRequested atomic.Bool
	// stopped[dir]: the owner wants no more iteration in dir (a local
	// reply replaced the request, the stream was reset).
	stopped [2]bool
	// finished: Finish returned (every filter's OnDestroy ran).
	finished bool
	// spare is what an earlier stream of the same owner left for Init
	// to reuse (Keep, Reuse; recycle.go).
	spare Spare
	queue
}

// Init makes one filter per factory, in order, each with its own
// callbacks. limits are the buffer limits in bytes for data held at one
// filter, request then response (0: none). obs may be nil.
func (e *HTTP) Init(host HTTPHost, obs HTTPObserver, info *filter.StreamInfo, factories []filter.Factory, requestLimit, responseLimit int) {
	e.host, e.obs, e.info = host, obs, info
	e.queue.init()
	n := len(factories)
	sp := e.spare
	e.spare = Spare{}
	st := sp.st
	if cap(st) < 2*n {
		st = make([]filterState, 2*n)
	}
	st = st[:2*n]
	e.st = st
	e.dec = chain{e: e, dir: filter.Request, st: st[:n:n], limit: requestLimit}
	e.enc = chain{e: e, dir: filter.Response, st: st[n:], limit: responseLimit}
	prev := sp.filters
	e.filters = prev
	if cap(e.filters) < n {
		e.filters = make([]filter.StreamFilter, n)
	}
	e.filters = e.filters[:n]
	e.cbs = sp.cbs
	if cap(e.cbs) < n {
		e.cbs = make([]callbacks, n)
	}
	e.cbs = e.cbs[:n]
	sel, _ := host.(FilterSelector)
	for i, f := range factories {
		e.cbs[i] = callbacks{e: e, index: i}
		var old filter.StreamFilter
		if i < len(prev) {
			old = prev[i]
		}
		e.filters[i] = nil
		if sel != nil && sel.FilterDisabled(i) {
			e.filters[i] = skipped{}
			continue
		}
		if r, ok := f.(filter.Renewer); ok && old != nil {
			e.filters[i] = r.RenewStreamFilter(old, &e.cbs[i])
			continue
		}
		e.filters[i] = f.NewStreamFilter(&e.cbs[i])
	}
}

// FilterSelector is implemented by a host whose streams may leave some
// configured filters out (a route's typed_per_filter_config disabling
// them). Init asks it once per filter, before making any.
type FilterSelector interface {
	// FilterDisabled reports whether factory i must not run on this
	// stream: its filter is never made, and the stream passes it by.
	FilterDisabled(i int) bool
}

// skipped stands in for a filter left out of a stream's chain: it
// passes everything on, so the chain behaves as if the filter were not
// configured, while filter indexes stay those of the configuration.
type skipped struct{ filter.PassThrough }

// FeedHeaders delivers dir's headers from its source (the client, the
// upstream) to the first filter.
func (e *HTTP) FeedHeaders(dir filter.Direction, h *filter.HeaderMap, end bool) {
	c := e.chain(dir)
	if dir == filter.Request {
		e.ReqHeaders = h
	} else {
		e.RespHeaders = h
	}
	c.headers, c.headersEnd = h, end
	c.runHeaders(0, end)
}

// FeedData delivers a chunk of dir's body from its source to the first
// filter. The engine owns b from now on: a filter may hold it and grow it
// in place.
func (e *HTTP) FeedData(dir filter.Direction, b []byte, end bool) { e.chain(dir).runData(0, b, end) }

// FeedTrailers delivers dir's trailers from its source to the first
// filter; they end dir.
func (e *HTTP) FeedTrailers(dir filter.Direction, t *filter.HeaderMap) {
	if dir == filter.Request {
		e.ReqTrailers = t
	} else {
		e.RespTrailers = t
	}
	e.chain(dir).runTrailers(0, t)
}

// LocalReply runs a reply made by the proxy through the response filters
// from the first, with fresh response state (what a filter held of an
// upstream response is dropped), as Envoy's sendLocalReplyViaFilterChain
// does; the request direction stops. The host calls it from its
// SendLocalReply once it knows no response has started.
func (e *HTTP) LocalReply(status int, body []byte, headers []filter.Pair) {
	e.haltRequested.Store(false)
	e.stopped[filter.Request] = true
	h := filter.NewHeaderMap(filter.Pair{Key: ":status", Value: statusString(status)})
	for _, p := range headers {
		h.Add(p.Key, p.Value)
	}
	if len(body) > 0 {
		if _, ok := h.Get("content-type"); !ok {
			h.Set("content-type", "text/plain")
		}
	}
	h.Set("content-length", strconv.Itoa(len(body)))
	e.RespTrailers = nil
	e.added[filter.Response] = false
	e.enc.reset()
	e.FeedHeaders(filter.Response, h, len(body) == 0)
	if len(body) > 0 && !e.host.Done() && !e.Halted(filter.Response) {
		// The body may be shared (a route's direct_response): with no
		// spare capacity, a filter that appends to it copies it.
		e.enc.runData(0, body[:len(body):len(body)], true)
	}
}

// Drain runs the queued actions until none is left, dropping them once
// the host is Done.
func (e *HTTP) Drain() {
	for fns := e.take(); len(fns) > 0; fns = e.take() {
		for _, fn := range fns {
			if !e.host.Done() {
				fn()
			}
		}
	}
}

// Halted reports that dir does not advance: a filter asked for a local
// reply or a reset that is not applied yet, or the owner stopped dir.
func (e *HTTP) Halted(dir filter.Direction) bool {
	return e.haltRequested.Load() || e.stopped[dir]
}

// Stopped reports that the owner stopped dir (Stop, LocalReply).
func (e *HTTP) Stopped(dir filter.Direction) bool { return e.stopped[dir] }

// Stop ends iteration in dir for good: a reset, or a response the owner
// answered itself.
func (e *HTTP) Stop(dir filter.Direction) { e.stopped[dir] = true }

// Paused reports that a filter holds something of dir (headers, data or
// trailers) that it has not let go on.
func (e *HTTP) Paused(dir filter.Direction) bool { return e.chain(dir).paused() }

// Finish ends every filter: OnLog on each, then OnDestroy on each, in
// configuration order. Nothing is called afterwards.
func (e *HTTP) Finish() {
	for _, f := range e.filters {
		f.OnLog()
	}
	for _, f := range e.filters {
		f.OnDestroy()
	}
	e.finished = true
}

func (e *HTTP) chain(dir filter.Direction) *chain {
	if dir == filter.Request {
		return &e.dec
	}
	return &e.enc
}

// filterState is where one filter stands in one direction of a stream.
type filterState struct {
	headersDone bool                 // headers went past this filter
	headersStop filter.HeadersStatus // why headers are held here, when !headersDone
	dataStopped bool                 // the last data callback held data
	// data is held at this filter; the filter's data callbacks get a
	// pointer to it (no copy, no allocation per call).
	data         filter.Buffer
	sawData      bool              // any data (or end of stream in data) reached this filter
	end          bool              // end of stream reached this filter in data
	trailers     *filter.HeaderMap // trailers held at this filter
	trailersStop bool              // the trailers callback stopped
}

// chain iterates one direction of a stream through the filters. Position
// k counts in the direction's order: for responses, position 0 is the
// last configured filter.
type chain struct {
	e       *HTTP
	dir     filter.Direction
	st      []filterState
	headers *filter.HeaderMap
	// headersEnd: the headers themselves ended the stream (no body).
	headersEnd bool
	// limit is the buffer limit in bytes for data held at a filter.
	limit int
	// sourcePaused: the source is paused (watermark) until no filter
	// holds more than the limit.
	sourcePaused bool
}

func (c *chain) n() int { return len(c.st) }

func (c *chain) reset() {
	clear(c.st)
	c.headers, c.headersEnd, c.sourcePaused = nil, false, false
}

func (c *chain) filterAt(k int) filter.StreamFilter {
	if c.dir == filter.Request {
		return c.e.filters[k]
	}
	return c.e.filters[len(c.e.filters)-1-k]
}

// index converts between a position and a filter index (configuration
// order); the conversion is its own inverse.
func (c *chain) index(k int) int {
	if c.dir == filter.Request {
		return k
	}
	return len(c.st) - 1 - k
}

func (c *chain) halted() bool { return c.e.Halted(c.dir) }

func (c *chain) trailersAdded() bool {
	if c.e.added[c.dir] {
		c.e.added[c.dir] = false
		return true
	}
	return false
}

func (c *chain) addedTrailers() *filter.HeaderMap {
	if c.dir == filter.Request {
		return c.e.ReqTrailers
	}
	return c.e.RespTrailers
}

func (c *chain) callHeaders(k int, h *filter.HeaderMap, end bool) filter.HeadersStatus {
	f := c.filterAt(k)
	if c.dir == filter.Request {
		return f.DecodeHeaders(h, end)
	}
	return f.EncodeHeaders(h, end)
}

func (c *chain) callData(k int, b *filter.Buffer, end bool) filter.DataStatus {
	f := c.filterAt(k)
	if c.dir == filter.Request {
		return f.DecodeData(b, end)
	}
	return f.EncodeData(b, end)
}

func (c *chain) callTrailers(k int, t *filter.HeaderMap) filter.TrailersStatus {
	f := c.filterAt(k)
	if c.dir == filter.Request {
		return f.DecodeTrailers(t)
	}
	return f.EncodeTrailers(t)
}

func (c *chain) runHeaders(k int, end bool) {
	for ; k < c.n(); k++ {
		st := c.callHeaders(k, c.headers, end)
		if c.halted() {
			c.st[k].headersStop = filter.HeadersStopAllIterationAndBuffer
			return
		}
		switch st {
		case filter.HeadersContinue, filter.HeadersContinueAndEndStream:
			c.st[k].headersDone = true
		default:
			c.st[k].headersStop = st
			return
		}
	}
	c.e.host.DeliverHeaders(c.dir, c.headers, end)
}

// runData delivers b at position k and on while filters continue. The
// first filter to hold it keeps it in its buffer (adopting b when it held
// nothing, as Envoy moves buffer slices).
func (c *chain) runData(k int, b []byte, end bool) {
	// addedAt is the position of the filter that created the trailers in
	// its last data callback: they follow the data from the next filter
	// on, and the data no longer ends the stream (Envoy's decodeData).
	addedAt := -1
	for ; k < c.n(); k++ {
		fs := &c.st[k]
		fs.sawData = true
		if len(fs.data.Bytes) == 0 {
			fs.data.Bytes = b
		} else {
			fs.data.Bytes = append(fs.data.Bytes, b...)
		}
		fs.end = fs.end || end
		if !fs.headersDone && fs.headersStop != filter.HeadersStopIteration {
			// StopAllIteration: hold data without calling the filter; it
			// sees the data once it continues.
			if c.e.obs != nil {
				c.e.obs.HeldData(c.dir, c.index(k), len(b), fs.headersStop)
			}
			c.checkLimit(k, fs, fs.headersStop == filter.HeadersStopAllIterationAndWatermark)
			break
		}
		st := c.callData(k, &fs.data, fs.end)
		if c.halted() {
			return
		}
		if fs.end && c.trailersAdded() {
			fs.end, addedAt = false, k
		}
		switch st {
		case filter.DataContinue:
			b, end = fs.data.Bytes, fs.end
			fs.data.Bytes = nil
			fs.dataStopped = false
			if !fs.headersDone {
				// Continuing data after headers StopIteration releases
				// the headers first, as Envoy does.
				fs.headersDone = true
				c.runHeaders(k+1, false)
				if c.halted() {
					return
				}
			}
			continue
		case filter.DataStopIterationNoBuffer:
			fs.data.Bytes = nil
			fs.dataStopped = true
		default:
			fs.dataStopped = true
			c.checkLimit(k, fs, st == filter.DataStopIterationAndWatermark)
		}
		if addedAt == k {
			// The trailers wait here with the data; they go on when this
			// filter continues.
			fs.trailers, addedAt = c.addedTrailers(), -1
		}
		break
	}
	if k == c.n() && (len(b) > 0 || end) {
		c.e.host.DeliverData(c.dir, b, end)
	}
	if addedAt >= 0 && !c.halted() {
		c.runTrailers(addedAt+1, c.addedTrailers())
	}
}

// checkLimit fails the stream when data held at position k passes the
// limit, or, in watermark mode, pauses the source until it drains.
func (c *chain) checkLimit(k int, fs *filterState, watermark bool) {
	if c.limit <= 0 || len(fs.data.Bytes) <= c.limit {
		return
	}
	e := c.e
	if e.obs != nil {
		e.obs.OverLimit(c.dir, c.index(k), len(fs.data.Bytes), c.limit, watermark)
	}
	if watermark {
		if !c.sourcePaused {
			c.sourcePaused = true
			e.host.PauseSource(c.dir)
		}
		return
	}
	e.haltRequested.Store(true)
	e.host.BufferOverflow(c.dir)
	// Envoy's requestDataTooLarge / responseDataTooLarge.
	status, body, details := 413, "Payload Too Large", "request_payload_too_large"
	if c.dir == filter.Response {
		status, body, details = 500, "Internal Server Error", "response_payload_too_large"
	}
	e.Post(func() { e.host.SendLocalReply(status, []byte(body), nil, details) })
}

// resumeSource lifts a watermark pause once no filter holds more than the
// limit (Envoy: the buffer drained below its low watermark).
func (c *chain) resumeSource() {
	if !c.sourcePaused {
		return
	}
	for i := range c.st {
		if len(c.st[i].data.Bytes) > c.limit {
			return
		}
	}
	c.sourcePaused = false
	c.e.host.ResumeSource(c.dir)
}

func (c *chain) runTrailers(k int, t *filter.HeaderMap) {
	for ; k < c.n(); k++ {
		fs := &c.st[k]
		if !fs.headersDone && fs.headersStop != filter.HeadersStopIteration {
			// StopAllIteration: the filter sees the trailers once it
			// continues.
			fs.trailers = t
			if c.e.obs != nil {
				c.e.obs.HeldTrailers(c.dir, c.index(k))
			}
			return
		}
		// Headers held with StopIteration still let the trailers reach
		// the filter, as Envoy's StopSingleIteration does (the gRPC
		// HTTP/1 bridge edits the held headers from the trailers).
		st := c.callTrailers(k, t)
		if c.halted() {
			return
		}
		if st != filter.TrailersContinue {
			fs.trailers = t
			fs.trailersStop = true
			return
		}
		if !fs.headersDone {
			// Trailers that continue release the held headers first, then
			// the held data (Envoy's commonHandleAfterTrailersCallback).
			fs.headersDone = true
			c.runHeaders(k+1, false)
			if c.halted() {
				return
			}
		}
		if fs.dataStopped || len(fs.data.Bytes) > 0 {
			// Trailers continue: data held here goes first.
			b := fs.data.Bytes
			fs.data.Bytes, fs.dataStopped = nil, false
			if len(b) > 0 {
				c.runData(k+1, b, false)
				if c.halted() {
					return
				}
			}
		}
	}
	c.e.host.DeliverTrailers(c.dir, t)
}

// resume continues iteration held at position k (the filter called
// Continue). Nothing happens if that filter holds nothing.
func (c *chain) resume(k int) {
	if k < 0 || k >= c.n() || c.halted() {
		return
	}
	fs := &c.st[k]
	switch {
	case !fs.headersDone:
		if c.headers == nil {
			return
		}
		fs.headersDone = true
		stopAll := fs.headersStop != filter.HeadersStopIteration
		held, end, sawData := fs.data.Bytes, fs.end, fs.sawData
		fs.data.Bytes = nil
		t := fs.trailers
		fs.trailers, fs.trailersStop = nil, false
		headersEnd := c.headersEnd && !sawData && t == nil
		c.runHeaders(k+1, headersEnd)
		if c.halted() {
			return
		}
		next := k + 1
		if stopAll {
			// The filter that stopped all iteration sees the held data
			// itself first.
			next = k
			fs.sawData = false
		}
		if sawData && (len(held) > 0 || end) {
			c.runData(next, held, end)
			if c.halted() {
				return
			}
		}
		if t != nil {
			c.runTrailers(next, t)
		}
	case fs.dataStopped:
		fs.dataStopped = false
		b, end := fs.data.Bytes, fs.end
		fs.data.Bytes = nil
		t := fs.trailers
		fs.trailers = nil
		if len(b) > 0 || end {
			c.runData(k+1, b, end)
			if c.halted() {
				return
			}
		}
		if t != nil {
			// Trailers that arrived while data was held were already
			// seen (and stopped) by this filter, or it added them.
			fs.trailersStop = false
			c.runTrailers(k+1, t)
		}
	case fs.trailersStop:
		fs.trailersStop = false
		t := fs.trailers
		fs.trailers = nil
		if t != nil {
			c.runTrailers(k+1, t)
		}
	}
	c.resumeSource()
}

// paused: a filter holds headers, data or trailers of this direction.
func (c *chain) paused() bool {
	if c.headers == nil {
		return false
	}
	for i := range c.st {
		fs := &c.st[i]
		if !fs.headersDone || fs.dataStopped || fs.trailersStop {
			return true
		}
	}
	return false
}

// callbacks is the filter.Callbacks of one filter on one stream.
type callbacks struct {
	e     *HTTP
	index int
}

func (cb *callbacks) Continue(dir filter.Direction) {
	e, i := cb.e, cb.index
	e.Post(func() {
		if e.obs != nil {
			e.obs.Continued(dir, i)
		}
		c := e.chain(dir)
		c.resume(c.index(i))
	})
}

func (cb *callbacks) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	e, i := cb.e, cb.index
	e.haltRequested.Store(true)
	e.Post(func() {
		if e.obs != nil {
			e.obs.LocalReplied(i, status, body, headers, details)
		}
		e.host.SendLocalReply(status, body, headers, details)
	})
}

func (cb *callbacks) Reset(details string) {
	e := cb.e
	e.haltRequested.Store(true)
	e.Post(func() { e.host.Reset(details) })
}

// Post implements filter.Poster on the engine's queue.
func (cb *callbacks) Post(fn func()) { cb.e.Post(fn) }

// SetBufferLimit implements filter.BufferLimiter: the limit of data held
// at any filter of the direction, from now on (0: none). It runs on the
// stream's goroutine, within a filter call, as the chain that reads the
// limit does.
func (cb *callbacks) SetBufferLimit(dir filter.Direction, limit int) {
	cb.e.chain(dir).limit = limit
}

// AddData implements filter.DataAdder: b joins the data held at this
// filter, which runTrailers sends on before the trailers once they
// continue.
func (cb *callbacks) AddData(dir filter.Direction, b []byte) {
	c := cb.e.chain(dir)
	fs := &c.st[c.index(cb.index)]
	fs.data.Bytes = append(fs.data.Bytes, b...)
}

func (cb *callbacks) RequestHeaders() *filter.HeaderMap   { return cb.e.ReqHeaders }
func (cb *callbacks) ResponseHeaders() *filter.HeaderMap  { return cb.e.RespHeaders }
func (cb *callbacks) RequestTrailers() *filter.HeaderMap  { return cb.e.ReqTrailers }
func (cb *callbacks) ResponseTrailers() *filter.HeaderMap { return cb.e.RespTrailers }
func (cb *callbacks) Info() *filter.StreamInfo            { return cb.e.info }

func (cb *callbacks) AddRequestTrailers() *filter.HeaderMap {
	e := cb.e
	if e.ReqTrailers == nil {
		e.ReqTrailers = filter.NewHeaderMap()
		e.added[filter.Request] = true
	}
	return e.ReqTrailers
}

func (cb *callbacks) AddResponseTrailers() *filter.HeaderMap {
	e := cb.e
	if e.RespTrailers == nil {
		e.RespTrailers = filter.NewHeaderMap()
		e.added[filter.Response] = true
	}
	return e.RespTrailers
}

// ClearRouteCache implements filter.RouteCacheClearer, passed on to a
// host that can match the route again (an HTTPHost implementing it);
// otherwise it does nothing, as without a route.
func (cb *callbacks) ClearRouteCache() {
	if rc, ok := cb.e.host.(filter.RouteCacheClearer); ok {
		rc.ClearRouteCache()
	}
}

// statusString is strconv.Itoa without an allocation for the three-digit
// status codes.
func statusString(n int) string {
	if n >= 100 && n < 1000 {
		return statusStrings[n-100]
	}
	return strconv.Itoa(n)
}

var statusStrings = func() (s [900]string) {
	for i := range s {
		s[i] = strconv.Itoa(i + 100)
	}
	return
}()
