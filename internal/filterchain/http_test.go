package filterchain

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// The tests drive the engine directly with native filters, in the style
// of Envoy's filter_manager_test: a case scripts what each filter answers
// and does, feeds the stream step by step, and compares the ordered log
// of filter calls, host calls and observer events with what Envoy's
// FilterManager does.

// script is what one filter answers; a nil func continues.
type script struct {
	decodeHeaders, encodeHeaders   func(c *call) filter.HeadersStatus
	decodeData, encodeData         func(c *call) filter.DataStatus
	decodeTrailers, encodeTrailers func(c *call) filter.TrailersStatus
}

// call is one filter callback as a script sees it.
type call struct {
	cb  filter.Callbacks
	h   *filter.HeaderMap // headers or trailers
	buf *filter.Buffer
	end bool
	n   int // how many times this callback ran before, on this filter
}

// testFilter is a native filter.StreamFilter that logs every call.
type testFilter struct {
	name  string
	s     script
	cb    filter.Callbacks
	log   *[]string
	count map[string]int
}

func (f *testFilter) record(what string, st string) {
	*f.log = append(*f.log, f.name+" "+what+" "+st)
}

func (f *testFilter) next(what string) int {
	n := f.count[what]
	f.count[what] = n + 1
	return n
}

func (f *testFilter) headers(what string, fn func(*call) filter.HeadersStatus, h *filter.HeaderMap, end bool) filter.HeadersStatus {
	st := filter.HeadersContinue
	if fn != nil {
		st = fn(&call{cb: f.cb, h: h, end: end, n: f.next(what)})
	}
	f.record(fmt.Sprintf("%s(end=%v)", what, end), headersStatus[st])
	return st
}

func (f *testFilter) data(what string, fn func(*call) filter.DataStatus, b *filter.Buffer, end bool) filter.DataStatus {
	in := string(b.Bytes)
	st := filter.DataContinue
	if fn != nil {
		st = fn(&call{cb: f.cb, buf: b, end: end, n: f.next(what)})
	}
	f.record(fmt.Sprintf("%s(%q, end=%v)", what, in, end), dataStatus[st])
	return st
}

func (f *testFilter) trailers(what string, fn func(*call) filter.TrailersStatus, t *filter.HeaderMap) filter.TrailersStatus {
	st := filter.TrailersContinue
	if fn != nil {
		st = fn(&call{cb: f.cb, h: t, n: f.next(what)})
	}
	name := "Continue"
	if st != filter.TrailersContinue {
		name = "StopIteration"
	}
	f.record(what, name)
	return st
}

func (f *testFilter) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	return f.headers("decodeHeaders", f.s.decodeHeaders, h, end)
}

func (f *testFilter) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	return f.headers("encodeHeaders", f.s.encodeHeaders, h, end)
}

func (f *testFilter) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return f.data("decodeData", f.s.decodeData, b, end)
}

func (f *testFilter) EncodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return f.data("encodeData", f.s.encodeData, b, end)
}

func (f *testFilter) DecodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return f.trailers("decodeTrailers", f.s.decodeTrailers, t)
}

func (f *testFilter) EncodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return f.trailers("encodeTrailers", f.s.encodeTrailers, t)
}

func (f *testFilter) OnLog()     { *f.log = append(*f.log, f.name+" log") }
func (f *testFilter) OnDestroy() { *f.log = append(*f.log, f.name+" destroy") }

type testFactory struct {
	f *testFilter
}

func (tf testFactory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	tf.f.cb = cb
	return tf.f
}

var headersStatus = map[filter.HeadersStatus]string{
	filter.HeadersContinue:                     "Continue",
	filter.HeadersStopIteration:                "StopIteration",
	filter.HeadersContinueAndEndStream:         "ContinueAndEndStream",
	filter.HeadersStopAllIterationAndBuffer:    "StopAllIterationAndBuffer",
	filter.HeadersStopAllIterationAndWatermark: "StopAllIterationAndWatermark",
}

var dataStatus = map[filter.DataStatus]string{
	filter.DataContinue:                  "Continue",
	filter.DataStopIterationAndBuffer:    "StopIterationAndBuffer",
	filter.DataStopIterationAndWatermark: "StopIterationAndWatermark",
	filter.DataStopIterationNoBuffer:     "StopIterationNoBuffer",
}

var dirName = map[filter.Direction]string{filter.Request: "request", filter.Response: "response"}

// testHost is the smallest host that keeps the engine's contract, the way
// proxy/stream.go does: a local reply goes through the response filters
// unless the response has started (then the stream resets), and the
// stream is done once the response has ended or it was reset.
type testHost struct {
	e                                   *HTTP
	log                                 *[]string
	localReplied, responseStarted, done bool
}

func (h *testHost) add(format string, args ...any) {
	*h.log = append(*h.log, fmt.Sprintf(format, args...))
}

func (h *testHost) DeliverHeaders(dir filter.Direction, m *filter.HeaderMap, end bool) {
	h.add("host headers %s %s end=%v", dirName[dir], pairs(m), end)
	if dir == filter.Response {
		h.responseStarted = true
		h.done = h.done || end
	}
}

func (h *testHost) DeliverData(dir filter.Direction, b []byte, end bool) {
	h.add("host data %s %q end=%v", dirName[dir], b, end)
	if dir == filter.Response {
		h.done = h.done || end
	}
}

func (h *testHost) DeliverTrailers(dir filter.Direction, t *filter.HeaderMap) {
	h.add("host trailers %s %s", dirName[dir], pairs(t))
	if dir == filter.Response {
		h.done = true
	}
}

func (h *testHost) SendLocalReply(status int, body []byte, headers []filter.Pair, details string) {
	h.add("host localReply %d %s", status, details)
	if h.done || h.localReplied {
		return
	}
	if h.responseStarted {
		h.Reset(details)
		return
	}
	h.localReplied = true
	h.e.LocalReply(status, body, headers)
}

func (h *testHost) Reset(details string) {
	h.add("host reset %s", details)
	if h.done {
		return
	}
	h.done = true
	h.e.Stop(filter.Request)
	h.e.Stop(filter.Response)
}

func (h *testHost) PauseSource(dir filter.Direction)    { h.add("host pause %s", dirName[dir]) }
func (h *testHost) ResumeSource(dir filter.Direction)   { h.add("host resume %s", dirName[dir]) }
func (h *testHost) BufferOverflow(dir filter.Direction) { h.add("host overflow %s", dirName[dir]) }
func (h *testHost) Done() bool                          { return h.done }

// The observer's events go to the same log.
func (h *testHost) HeldData(dir filter.Direction, i, n int, stop filter.HeadersStatus) {
	h.add("held data %s f%d %d bytes (%s)", dirName[dir], i, n, headersStatus[stop])
}

func (h *testHost) HeldTrailers(dir filter.Direction, i int) {
	h.add("held trailers %s f%d", dirName[dir], i)
}

func (h *testHost) OverLimit(dir filter.Direction, i, held, limit int, watermark bool) {
	mode := "buffer"
	if watermark {
		mode = "watermark"
	}
	h.add("over limit %s f%d %d>%d %s", dirName[dir], i, held, limit, mode)
}

func (h *testHost) Continued(dir filter.Direction, i int) { h.add("continued %s f%d", dirName[dir], i) }

func (h *testHost) LocalReplied(i, status int, _ []byte, _ []filter.Pair, details string) {
	h.add("localReplied f%d %d %s", i, status, details)
}

func pairs(m *filter.HeaderMap) string {
	var parts []string
	for _, p := range m.Pairs() {
		parts = append(parts, p.Key+"="+p.Value)
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// httpTest is one stream on the engine with its filters and host.
type httpTest struct {
	e       HTTP
	host    testHost
	filters []*testFilter
	log     []string
}

func newHTTPTest(scripts []script, requestLimit, responseLimit int) *httpTest {
	t := &httpTest{}
	t.host = testHost{e: &t.e, log: &t.log}
	var factories []filter.Factory
	for i, s := range scripts {
		f := &testFilter{name: fmt.Sprintf("f%d", i), s: s, log: &t.log, count: map[string]int{}}
		t.filters = append(t.filters, f)
		factories = append(factories, testFactory{f})
	}
	t.e.Init(&t.host, &t.host, &filter.StreamInfo{}, factories, requestLimit, responseLimit)
	return t
}

// Steps feed the stream as a host would, then apply what the filters
// asked for.
type step func(t *httpTest)

func reqHeaders(end bool) step {
	return func(t *httpTest) {
		t.e.FeedHeaders(filter.Request, filter.NewHeaderMap(filter.Pair{Key: ":path", Value: "/"}), end)
		t.e.Drain()
	}
}

func respHeaders(end bool) step {
	return func(t *httpTest) {
		t.e.FeedHeaders(filter.Response, filter.NewHeaderMap(filter.Pair{Key: ":status", Value: "200"}), end)
		t.e.Drain()
	}
}

func reqData(s string, end bool) step  { return data(filter.Request, s, end) }
func respData(s string, end bool) step { return data(filter.Response, s, end) }

func data(dir filter.Direction, s string, end bool) step {
	return func(t *httpTest) {
		t.e.FeedData(dir, []byte(s), end)
		t.e.Drain()
	}
}

func reqTrailers() step  { return trailers(filter.Request) }
func respTrailers() step { return trailers(filter.Response) }

func trailers(dir filter.Direction) step {
	return func(t *httpTest) {
		t.e.FeedTrailers(dir, filter.NewHeaderMap(filter.Pair{Key: "t", Value: "1"}))
		t.e.Drain()
	}
}

// cont is filter i calling Continue(dir) outside its callbacks (as a
// Wasm filter does when an HTTP call returns).
func cont(i int, dir filter.Direction) step {
	return func(t *httpTest) {
		t.filters[i].cb.Continue(dir)
		t.e.Drain()
	}
}

func stopHeaders(st filter.HeadersStatus) func(*call) filter.HeadersStatus {
	return func(*call) filter.HeadersStatus { return st }
}

func stopData(st filter.DataStatus) func(*call) filter.DataStatus {
	return func(*call) filter.DataStatus { return st }
}

// addTrailers adds dir's trailers in the last data callback, then
// answers st.
func addTrailers(dir filter.Direction, st filter.DataStatus) func(*call) filter.DataStatus {
	return func(c *call) filter.DataStatus {
		if c.end {
			t := c.cb.AddRequestTrailers()
			if dir == filter.Response {
				t = c.cb.AddResponseTrailers()
			}
			t.Set("x-added", "1")
		}
		return st
	}
}

func TestHTTPChain(t *testing.T) {
	const (
		req  = filter.Request
		resp = filter.Response
	)
	cases := []struct {
		name      string
		filters   []script
		reqLimit  int
		respLimit int
		steps     []step
		want      []string
		check     func(t *testing.T, h *httpTest)
	}{
		{
			name:    "continue passes everything on, responses in reverse order",
			filters: []script{{}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", true), respHeaders(false), respData("cd", false), respTrailers()},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=true) Continue`,
				`f1 decodeData("ab", end=true) Continue`,
				`host data request "ab" end=true`,
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=200} end=false",
				`f1 encodeData("cd", end=false) Continue`,
				`f0 encodeData("cd", end=false) Continue`,
				`host data response "cd" end=false`,
				"f1 encodeTrailers Continue",
				"f0 encodeTrailers Continue",
				"host trailers response {t=1}",
			},
		},
		{
			name:    "headers StopIteration lets data reach the filter; continuing the data releases the headers first",
			filters: []script{{decodeHeaders: stopHeaders(filter.HeadersStopIteration)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", true)},
			want: []string{
				"f0 decodeHeaders(end=false) StopIteration",
				`f0 decodeData("ab", end=true) Continue`,
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f1 decodeData("ab", end=true) Continue`,
				`host data request "ab" end=true`,
			},
		},
		{
			// Envoy's StopSingleIteration: the trailers reach the filter
			// holding the headers; their Continue releases the headers,
			// then the held data, then the trailers (the gRPC HTTP/1
			// bridge rewrites its held response headers from them).
			name: "headers StopIteration lets trailers reach the filter; continuing them releases headers, data, trailers",
			filters: []script{{
				decodeHeaders: stopHeaders(filter.HeadersStopIteration),
				decodeData:    stopData(filter.DataStopIterationAndBuffer),
			}, {}},
			steps: []step{reqHeaders(false), reqData("ab", false), reqTrailers()},
			want: []string{
				"f0 decodeHeaders(end=false) StopIteration",
				`f0 decodeData("ab", end=false) StopIterationAndBuffer`,
				"f0 decodeTrailers Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f1 decodeTrailers Continue",
				"host trailers request {t=1}",
			},
		},
		{
			name:    "StopAllIterationAndBuffer holds data before the filter, which sees it itself on Continue",
			filters: []script{{decodeHeaders: stopHeaders(filter.HeadersStopAllIterationAndBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", false), reqData("cd", true), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) StopAllIterationAndBuffer",
				"held data request f0 2 bytes (StopAllIterationAndBuffer)",
				"held data request f0 2 bytes (StopAllIterationAndBuffer)",
				"continued request f0",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("abcd", end=true) Continue`,
				`f1 decodeData("abcd", end=true) Continue`,
				`host data request "abcd" end=true`,
			},
		},
		{
			name:    "StopAllIteration holds trailers too: the filter sees its held data, then the trailers",
			filters: []script{{decodeHeaders: stopHeaders(filter.HeadersStopAllIterationAndBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", false), reqTrailers(), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) StopAllIterationAndBuffer",
				"held data request f0 2 bytes (StopAllIterationAndBuffer)",
				"held trailers request f0",
				"continued request f0",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=false) Continue`,
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f0 decodeTrailers Continue",
				"f1 decodeTrailers Continue",
				"host trailers request {t=1}",
			},
		},
		{
			name:    "headers continued without a body end the stream for the filters after",
			filters: []script{{decodeHeaders: stopHeaders(filter.HeadersStopIteration)}, {}},
			steps:   []step{reqHeaders(true), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=true) StopIteration",
				"continued request f0",
				"f1 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
			},
		},
		{
			name:    "StopIterationAndBuffer: each call sees everything held so far; Continue passes it on",
			filters: []script{{decodeData: stopData(filter.DataStopIterationAndBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", false), reqData("cd", true), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=false) StopIterationAndBuffer`,
				`f0 decodeData("abcd", end=true) StopIterationAndBuffer`,
				"continued request f0",
				`f1 decodeData("abcd", end=true) Continue`,
				`host data request "abcd" end=true`,
			},
		},
		{
			name:    "StopIterationNoBuffer drops the data; Continue still ends the stream (an empty last chunk)",
			filters: []script{{decodeData: stopData(filter.DataStopIterationNoBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", true), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=true) StopIterationNoBuffer`,
				"continued request f0",
				`f1 decodeData("", end=true) Continue`,
				`host data request "" end=true`,
			},
		},
		{
			name:     "buffering past the limit fails the request with 413, answered through the response filters",
			filters:  []script{{}, {decodeData: stopData(filter.DataStopIterationAndBuffer)}},
			reqLimit: 4,
			steps:    []step{reqHeaders(false), reqData("abc", false), reqData("de", false)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("abc", end=false) Continue`,
				`f1 decodeData("abc", end=false) StopIterationAndBuffer`,
				`f0 decodeData("de", end=false) Continue`,
				`f1 decodeData("abcde", end=false) StopIterationAndBuffer`,
				"over limit request f1 5>4 buffer",
				"host overflow request",
				"host localReply 413 request_payload_too_large",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=413 content-type=text/plain content-length=17} end=false",
				`f1 encodeData("Payload Too Large", end=true) Continue`,
				`f0 encodeData("Payload Too Large", end=true) Continue`,
				`host data response "Payload Too Large" end=true`,
			},
			check: func(t *testing.T, h *httpTest) {
				if !h.e.Stopped(req) {
					t.Error("the request direction still iterates after the 413")
				}
			},
		},
		{
			name: "StopAllIterationAndBuffer past the limit fails the request with 413",
			filters: []script{{decodeHeaders: func(c *call) filter.HeadersStatus {
				return filter.HeadersStopAllIterationAndBuffer
			}}, {}},
			reqLimit: 4,
			steps:    []step{reqHeaders(false), reqData("abcde", false)},
			want: []string{
				"f0 decodeHeaders(end=false) StopAllIterationAndBuffer",
				"held data request f0 5 bytes (StopAllIterationAndBuffer)",
				"over limit request f0 5>4 buffer",
				"host overflow request",
				"host localReply 413 request_payload_too_large",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=413 content-type=text/plain content-length=17} end=false",
				`f1 encodeData("Payload Too Large", end=true) Continue`,
				`f0 encodeData("Payload Too Large", end=true) Continue`,
				`host data response "Payload Too Large" end=true`,
			},
		},
		{
			name: "response buffered past the limit before the response started: 500",
			filters: []script{{
				encodeHeaders: func(c *call) filter.HeadersStatus {
					if v, _ := c.h.Get(":status"); v == "200" {
						return filter.HeadersStopIteration
					}
					return filter.HeadersContinue
				},
				encodeData: func(c *call) filter.DataStatus {
					if c.end {
						return filter.DataContinue
					}
					return filter.DataStopIterationAndBuffer
				},
			}, {}},
			respLimit: 4,
			steps:     []step{reqHeaders(true), respHeaders(false), respData("abcde", false)},
			want: []string{
				"f0 decodeHeaders(end=true) Continue",
				"f1 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) StopIteration",
				`f1 encodeData("abcde", end=false) Continue`,
				`f0 encodeData("abcde", end=false) StopIterationAndBuffer`,
				"over limit response f0 5>4 buffer",
				"host overflow response",
				"host localReply 500 response_payload_too_large",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=500 content-type=text/plain content-length=21} end=false",
				`f1 encodeData("Internal Server Error", end=true) Continue`,
				`f0 encodeData("Internal Server Error", end=true) Continue`,
				`host data response "Internal Server Error" end=true`,
			},
		},
		{
			name:      "response buffered past the limit after the response started: reset",
			filters:   []script{{encodeData: stopData(filter.DataStopIterationAndBuffer)}, {}},
			respLimit: 4,
			steps:     []step{reqHeaders(true), respHeaders(false), respData("abcde", false)},
			want: []string{
				"f0 decodeHeaders(end=true) Continue",
				"f1 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=200} end=false",
				`f1 encodeData("abcde", end=false) Continue`,
				`f0 encodeData("abcde", end=false) StopIterationAndBuffer`,
				"over limit response f0 5>4 buffer",
				"host overflow response",
				"host localReply 500 response_payload_too_large",
				"host reset response_payload_too_large",
			},
		},
		{
			name:     "watermark: the source pauses once past the limit and resumes when the filter lets the data go",
			filters:  []script{{decodeData: stopData(filter.DataStopIterationAndWatermark)}, {}},
			reqLimit: 4,
			steps:    []step{reqHeaders(false), reqData("abc", false), reqData("de", false), reqData("f", false), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("abc", end=false) StopIterationAndWatermark`,
				`f0 decodeData("abcde", end=false) StopIterationAndWatermark`,
				"over limit request f0 5>4 watermark",
				"host pause request",
				`f0 decodeData("abcdef", end=false) StopIterationAndWatermark`,
				"over limit request f0 6>4 watermark",
				"continued request f0",
				`f1 decodeData("abcdef", end=false) Continue`,
				`host data request "abcdef" end=false`,
				"host resume request",
			},
		},
		{
			name: "watermark: the source stays paused while a later filter holds more than the limit",
			filters: []script{
				{decodeData: stopData(filter.DataStopIterationAndWatermark)},
				{decodeData: stopData(filter.DataStopIterationAndWatermark)},
			},
			reqLimit: 4,
			steps:    []step{reqHeaders(false), reqData("abcde", false), cont(0, req), cont(1, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("abcde", end=false) StopIterationAndWatermark`,
				"over limit request f0 5>4 watermark",
				"host pause request",
				"continued request f0",
				`f1 decodeData("abcde", end=false) StopIterationAndWatermark`,
				"over limit request f1 5>4 watermark",
				"continued request f1",
				`host data request "abcde" end=false`,
				"host resume request",
			},
		},
		{
			name:     "StopAllIterationAndWatermark pauses the source without calling the filter",
			filters:  []script{{decodeHeaders: stopHeaders(filter.HeadersStopAllIterationAndWatermark)}, {}},
			reqLimit: 4,
			steps:    []step{reqHeaders(false), reqData("abcde", false), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) StopAllIterationAndWatermark",
				"held data request f0 5 bytes (StopAllIterationAndWatermark)",
				"over limit request f0 5>4 watermark",
				"host pause request",
				"continued request f0",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("abcde", end=false) Continue`,
				`f1 decodeData("abcde", end=false) Continue`,
				`host data request "abcde" end=false`,
				"host resume request",
			},
		},
		{
			name: "a local reply from the request headers skips the later filters and runs through every response filter",
			filters: []script{{decodeHeaders: func(c *call) filter.HeadersStatus {
				c.cb.SendLocalReply(403, []byte("denied"), []filter.Pair{{Key: "x-why", Value: "test"}}, "blocked")
				return filter.HeadersContinue
			}}, {}},
			steps: []step{reqHeaders(false)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"localReplied f0 403 blocked",
				"host localReply 403 blocked",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=403 x-why=test content-type=text/plain content-length=6} end=false",
				`f1 encodeData("denied", end=true) Continue`,
				`f0 encodeData("denied", end=true) Continue`,
				`host data response "denied" end=true`,
			},
			check: func(t *testing.T, h *httpTest) {
				if !h.e.Stopped(req) {
					t.Error("the request direction still iterates after the local reply")
				}
			},
		},
		{
			name: "a local reply after the response started resets the stream",
			filters: []script{{encodeData: func(c *call) filter.DataStatus {
				c.cb.SendLocalReply(500, nil, nil, "too_late")
				return filter.DataContinue
			}}, {}},
			steps: []step{reqHeaders(true), respHeaders(false), respData("ab", false)},
			want: []string{
				"f0 decodeHeaders(end=true) Continue",
				"f1 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=200} end=false",
				`f1 encodeData("ab", end=false) Continue`,
				`f0 encodeData("ab", end=false) Continue`,
				"localReplied f0 500 too_late",
				"host localReply 500 too_late",
				"host reset too_late",
			},
		},
		{
			name: "a reset halts iteration at once and stops both directions",
			filters: []script{{}, {decodeData: func(c *call) filter.DataStatus {
				c.cb.Reset("boom")
				return filter.DataContinue
			}}},
			steps: []step{reqHeaders(false), reqData("ab", false)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=false) Continue`,
				`f1 decodeData("ab", end=false) Continue`,
				"host reset boom",
			},
			check: func(t *testing.T, h *httpTest) {
				if !h.e.Halted(req) || !h.e.Halted(resp) {
					t.Error("a direction still iterates after the reset")
				}
			},
		},
		{
			name: "actions queued after the stream ended are dropped",
			filters: []script{{decodeHeaders: func(c *call) filter.HeadersStatus {
				c.cb.Reset("first")
				c.cb.Continue(filter.Request)
				return filter.HeadersStopIteration
			}}, {}},
			steps: []step{reqHeaders(false)},
			want: []string{
				"f0 decodeHeaders(end=false) StopIteration",
				"host reset first",
			},
		},
		{
			name:    "trailers added in the last data callback follow the data through the later filters",
			filters: []script{{decodeData: addTrailers(req, filter.DataContinue)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", true)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=true) Continue`,
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f1 decodeTrailers Continue",
				"host trailers request {x-added=1}",
			},
		},
		{
			name:    "trailers added by a filter that buffers wait with its data",
			filters: []script{{decodeData: addTrailers(req, filter.DataStopIterationAndBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", true), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=true) StopIterationAndBuffer`,
				"continued request f0",
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f1 decodeTrailers Continue",
				"host trailers request {x-added=1}",
			},
		},
		{
			name:    "trailers added ahead of a filter that holds the data reach it with the data held",
			filters: []script{{decodeData: addTrailers(req, filter.DataContinue)}, {decodeData: stopData(filter.DataStopIterationAndBuffer)}},
			steps:   []step{reqHeaders(false), reqData("ab", true)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=true) Continue`,
				`f1 decodeData("ab", end=false) StopIterationAndBuffer`,
				"f1 decodeTrailers Continue",
				`host data request "ab" end=false`,
				"host trailers request {x-added=1}",
			},
		},
		{
			name:    "response trailers added by the last response filter follow the body to the client",
			filters: []script{{encodeData: addTrailers(resp, filter.DataContinue)}, {}},
			steps:   []step{reqHeaders(true), respHeaders(false), respData("ab", true)},
			want: []string{
				"f0 decodeHeaders(end=true) Continue",
				"f1 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
				"f1 encodeHeaders(end=false) Continue",
				"f0 encodeHeaders(end=false) Continue",
				"host headers response {:status=200} end=false",
				`f1 encodeData("ab", end=true) Continue`,
				`f0 encodeData("ab", end=true) Continue`,
				`host data response "ab" end=false`,
				"host trailers response {x-added=1}",
			},
		},
		{
			name:    "trailers StopIteration holds them until Continue",
			filters: []script{{decodeTrailers: func(*call) filter.TrailersStatus { return filter.TrailersStopIteration }}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", false), reqTrailers(), cont(0, req)},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=false) Continue`,
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f0 decodeTrailers StopIteration",
				"continued request f0",
				"f1 decodeTrailers Continue",
				"host trailers request {t=1}",
			},
		},
		{
			name:    "trailers that continue a buffering filter send its held data first",
			filters: []script{{decodeData: stopData(filter.DataStopIterationAndBuffer)}, {}},
			steps:   []step{reqHeaders(false), reqData("ab", false), reqTrailers()},
			want: []string{
				"f0 decodeHeaders(end=false) Continue",
				"f1 decodeHeaders(end=false) Continue",
				"host headers request {:path=/} end=false",
				`f0 decodeData("ab", end=false) StopIterationAndBuffer`,
				"f0 decodeTrailers Continue",
				`f1 decodeData("ab", end=false) Continue`,
				`host data request "ab" end=false`,
				"f1 decodeTrailers Continue",
				"host trailers request {t=1}",
			},
		},
		{
			name:    "a response filter's Continue resumes the response, in response order",
			filters: []script{{}, {encodeHeaders: stopHeaders(filter.HeadersStopIteration)}, {}},
			steps:   []step{reqHeaders(true), respHeaders(true), cont(1, resp)},
			want: []string{
				"f0 decodeHeaders(end=true) Continue",
				"f1 decodeHeaders(end=true) Continue",
				"f2 decodeHeaders(end=true) Continue",
				"host headers request {:path=/} end=true",
				"f2 encodeHeaders(end=true) Continue",
				"f1 encodeHeaders(end=true) StopIteration",
				"continued response f1",
				"f0 encodeHeaders(end=true) Continue",
				"host headers response {:status=200} end=true",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHTTPTest(tc.filters, tc.reqLimit, tc.respLimit)
			for _, s := range tc.steps {
				s(h)
			}
			if !slices.Equal(h.log, tc.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

// A Continue from another goroutine (a Wasm filter's HTTP call reply) is
// queued, wakes the owner and applies when it drains.
func TestHTTPContinueFromAnotherGoroutine(t *testing.T) {
	h := newHTTPTest([]script{{decodeHeaders: stopHeaders(filter.HeadersStopIteration)}, {}}, 0, 0)
	reqHeaders(true)(h)
	if !h.e.Paused(filter.Request) {
		t.Fatal("the request is not paused at the filter")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.filters[0].cb.Continue(filter.Request)
	}()
	<-done
	<-h.e.Notify()
	if !h.e.Pending() {
		t.Fatal("the Continue is not queued")
	}
	h.e.Drain()
	want := []string{
		"f0 decodeHeaders(end=true) StopIteration",
		"continued request f0",
		"f1 decodeHeaders(end=true) Continue",
		"host headers request {:path=/} end=true",
	}
	if !slices.Equal(h.log, want) {
		t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(want, "\n  "))
	}
	if h.e.Paused(filter.Request) {
		t.Error("the request is still paused")
	}
}

// A local reply's body can be shared (a route's direct_response): a
// response filter that appends to it must not write into the caller's
// array.
func TestHTTPLocalReplyBodyStaysTheCallers(t *testing.T) {
	body := make([]byte, 2, 16)
	copy(body, "no")
	h := newHTTPTest([]script{{encodeData: func(c *call) filter.DataStatus {
		c.buf.Bytes = append(c.buf.Bytes, '!')
		return filter.DataContinue
	}}}, 0, 0)
	reqHeaders(true)(h)
	h.host.SendLocalReply(403, body, nil, "blocked")
	if got := h.log[len(h.log)-1]; got != `host data response "no!" end=true` {
		t.Errorf("the client got %s", got)
	}
	if spare := body[:cap(body)][2:]; strings.Trim(string(spare), "\x00") != "" {
		t.Errorf("the filter wrote %q into the caller's body array", spare)
	}
}

// Finish ends every filter: OnLog on each, then OnDestroy on each, in
// configuration order.
func TestHTTPFinish(t *testing.T) {
	h := newHTTPTest([]script{{}, {}}, 0, 0)
	h.e.Finish()
	want := []string{"f0 log", "f1 log", "f0 destroy", "f1 destroy"}
	if !slices.Equal(h.log, want) {
		t.Errorf("got %q, want %q", h.log, want)
	}
}

// The callbacks show the stream's header maps; trailers a filter adds
// exist once.
func TestHTTPCallbacksHeaderMaps(t *testing.T) {
	h := newHTTPTest([]script{{}}, 0, 0)
	cb := h.filters[0].cb
	if cb.RequestHeaders() != nil {
		t.Fatal("request headers before any were fed")
	}
	reqHeaders(false)(h)
	if cb.RequestHeaders() != h.e.ReqHeaders || cb.RequestHeaders() == nil {
		t.Error("RequestHeaders is not the stream's map")
	}
	t1 := cb.AddRequestTrailers()
	if t2 := cb.AddRequestTrailers(); t1 != t2 || cb.RequestTrailers() != t1 {
		t.Error("AddRequestTrailers made a second map")
	}
	if cb.ResponseHeaders() != nil || cb.ResponseTrailers() != nil {
		t.Error("response maps before the response")
	}
}
