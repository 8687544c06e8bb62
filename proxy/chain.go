package proxy

import "github.com/wasmproxy/wasmproxy/filter"

// filterState is where one filter stands in one direction of a stream.
type filterState struct {
	headersDone  bool                 // headers went past this filter
	headersStop  filter.HeadersStatus // why headers are held here, when !headersDone
	dataStopped  bool                 // the last data callback held data
	dataMode     filter.DataStatus    // how data is held: buffer or watermark
	buf          []byte               // data held at this filter
	sawData      bool                 // any data (or end of stream in data) reached this filter
	end          bool                 // end of stream reached this filter in data
	trailers     *filter.HeaderMap    // trailers held at this filter
	trailersStop bool                 // the trailers callback stopped
}

// sink is where a direction ends: the router for requests, the
// downstream writer for responses.
type sink interface {
	headers(h *filter.HeaderMap, end bool)
	data(b []byte, end bool)
	trailers(t *filter.HeaderMap)
}

// chain iterates one direction of a stream through the filters, with
// Envoy's stop/continue/buffer semantics. Position k counts in the
// direction's order: for responses, position 0 is the last configured
// filter. All methods run on the stream goroutine.
type chain struct {
	s       *stream
	dir     filter.Direction
	st      []filterState
	out     sink
	headers *filter.HeaderMap
	// headersEnd: the headers themselves ended the stream (no body).
	headersEnd bool
	// limit is the buffer limit in bytes for data held at a filter.
	limit int
}

func (c *chain) n() int { return len(c.st) }

func (c *chain) filterAt(k int) filter.StreamFilter {
	if c.dir == filter.Request {
		return c.s.filters[k]
	}
	return c.s.filters[len(c.s.filters)-1-k]
}

// position converts a filter index (configuration order) to this
// chain's position.
func (c *chain) position(filterIndex int) int {
	if c.dir == filter.Request {
		return filterIndex
	}
	return len(c.s.filters) - 1 - filterIndex
}

// halted reports that the stream no longer wants this direction to
// advance (local reply requested, reset, or finished).
func (c *chain) halted() bool {
	if c.s.haltRequested.Load() {
		return true
	}
	if c.dir == filter.Request {
		return c.s.decodeHalted
	}
	return c.s.encodeHalted
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

// start feeds the direction's headers in at position 0.
func (c *chain) start(h *filter.HeaderMap, end bool) {
	c.headers = h
	c.headersEnd = end
	c.runHeaders(0, end)
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
	c.out.headers(c.headers, end)
}

// feedData delivers a chunk arriving from the source (downstream body or
// upstream response body) at position 0.
func (c *chain) feedData(b []byte, end bool) { c.runData(0, b, end) }

func (c *chain) runData(k int, b []byte, end bool) {
	for ; k < c.n(); k++ {
		fs := &c.st[k]
		fs.sawData = true
		if len(fs.buf) == 0 {
			fs.buf = b
		} else {
			fs.buf = append(fs.buf, b...)
		}
		fs.end = fs.end || end
		if !fs.headersDone && fs.headersStop != filter.HeadersStopIteration {
			// StopAllIteration: hold data without calling the filter; it
			// sees the data once it continues.
			c.checkLimit(fs, fs.headersStop == filter.HeadersStopAllIterationAndWatermark)
			return
		}
		buf := filter.Buffer{Bytes: fs.buf}
		st := c.callData(k, &buf, fs.end)
		fs.buf = buf.Bytes
		if c.halted() {
			return
		}
		switch st {
		case filter.DataContinue:
			b, end = fs.buf, fs.end
			fs.buf = nil
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
		case filter.DataStopIterationNoBuffer:
			fs.buf = nil
			fs.dataStopped = true
			fs.dataMode = st
			return
		default:
			fs.dataStopped = true
			fs.dataMode = st
			c.checkLimit(fs, st == filter.DataStopIterationAndWatermark)
			return
		}
	}
	if len(b) > 0 || end {
		c.out.data(b, end)
	}
}

// checkLimit fails the stream when buffered data passes the limit, or,
// in watermark mode, stops reading from the source until it drains.
func (c *chain) checkLimit(fs *filterState, watermark bool) {
	if c.limit <= 0 || len(fs.buf) <= c.limit {
		return
	}
	if watermark {
		c.s.pauseSource(c.dir)
		return
	}
	c.s.bufferOverflow(c.dir)
}

// feedTrailers delivers trailers from the source at position 0.
func (c *chain) feedTrailers(t *filter.HeaderMap) { c.runTrailers(0, t) }

func (c *chain) runTrailers(k int, t *filter.HeaderMap) {
	for ; k < c.n(); k++ {
		fs := &c.st[k]
		if !fs.headersDone {
			fs.trailers = t
			return
		}
		st := c.callTrailers(k, t)
		if c.halted() {
			return
		}
		if st != filter.TrailersContinue {
			fs.trailers = t
			fs.trailersStop = true
			return
		}
		if fs.dataStopped || len(fs.buf) > 0 {
			// Trailers continue: data held here goes first.
			b := fs.buf
			fs.buf, fs.dataStopped = nil, false
			if len(b) > 0 {
				c.runData(k+1, b, false)
				if c.halted() {
					return
				}
			}
		}
	}
	c.out.trailers(t)
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
		held, end, sawData := fs.buf, fs.end, fs.sawData
		fs.buf = nil
		t := fs.trailers
		fs.trailers = nil
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
			if stopAll {
				c.runTrailers(k, t)
			} else {
				c.runTrailers(k+1, t)
			}
		}
	case fs.dataStopped:
		fs.dataStopped = false
		b, end := fs.buf, fs.end
		fs.buf = nil
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
			// seen (and stopped) by this filter.
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
	c.s.unpauseSource(c.dir)
}
