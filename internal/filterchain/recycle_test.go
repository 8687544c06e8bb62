package filterchain

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// releasing is a filter that buffers the request body and reports
// released once destroyed, unless it keeps its stream (held).
type releasing struct {
	filter.PassThrough
	cb        filter.Callbacks
	destroyed bool
	held      bool
	stream    int // the stream it serves, by the factory's count
}

func (r *releasing) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	if !end {
		return filter.DataStopIterationAndBuffer
	}
	return filter.DataContinue
}
func (r *releasing) OnDestroy()     { r.destroyed = true }
func (r *releasing) Released() bool { return r.destroyed && !r.held }

// renewing makes releasing filters and renews released ones.
type renewing struct{ made, renewed int }

func (f *renewing) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	f.made++
	return &releasing{cb: cb, stream: f.made + f.renewed}
}

func (f *renewing) RenewStreamFilter(prev filter.StreamFilter, cb filter.Callbacks) filter.StreamFilter {
	r, ok := prev.(*releasing)
	if !ok || !r.Released() {
		return f.NewStreamFilter(cb)
	}
	f.renewed++
	*r = releasing{cb: cb, stream: f.made + f.renewed}
	return r
}

// runStream runs one request with a body through e and ends it.
func runStream(t *testing.T, e *HTTP, factories []filter.Factory, body string) *testHost {
	t.Helper()
	var log []string
	h := &testHost{e: e, log: &log}
	e.Init(h, nil, &filter.StreamInfo{}, factories, 0, 0)
	e.FeedHeaders(filter.Request, filter.NewHeaderMap(filter.Pair{Key: ":path", Value: "/"}), false)
	e.FeedData(filter.Request, []byte(body[:1]), false)
	e.FeedData(filter.Request, []byte(body[1:]), true)
	e.Drain()
	e.Finish()
	return h
}

// TestReleasedAndKept: a stream's engine is Released only after Finish
// and when every filter it made reports released; what Keep leaves for
// the next Init holds nothing of the request (the per-filter state with
// the buffered body is cleared) and the next stream gets the renewed
// filters, bound to its own callbacks; a filter that keeps its stream,
// or one that is not a filter.Releaser, keeps the engine from being
// released.
func TestReleasedAndKept(t *testing.T) {
	rf := &renewing{}
	factories := []filter.Factory{rf, rf}
	var e HTTP
	var log []string
	e.Init(&testHost{e: &e, log: &log}, nil, &filter.StreamInfo{}, factories, 0, 0)
	if e.Released() {
		t.Fatal("released before Finish")
	}
	e = HTTP{}
	runStream(t, &e, factories, "first body")
	if !e.Released() {
		t.Fatal("not released after Finish with releasing filters")
	}
	first := e.filters[0].(*releasing)
	sp := e.Keep()
	for i, st := range sp.st[:cap(sp.st)] {
		if st.data.Bytes != nil || st.trailers != nil || st.headersDone || st.sawData || st.end || st.dataStopped {
			t.Fatalf("kept filter state %d still holds %+v", i, st)
		}
	}
	e = HTTP{}
	e.Reuse(sp)
	runStream(t, &e, factories, "second")
	if rf.made != 4 || rf.renewed != 2 {
		t.Fatalf("made %d, renewed %d filters for three streams of two filters (the first never finished), want 4 and 2", rf.made, rf.renewed)
	}
	if e.filters[0] != filter.StreamFilter(first) || first.cb != filter.Callbacks(&e.cbs[0]) || first.stream != 5 {
		t.Fatalf("the second stream's first filter: %+v", e.filters[0])
	}

	// A filter that still holds its stream keeps it.
	e.filters[1].(*releasing).held = true
	if e.Released() {
		t.Fatal("released while a filter holds the stream")
	}
	// A filter that is not a filter.Releaser keeps it too.
	var e2 HTTP
	runStream(t, &e2, []filter.Factory{rf, passFactory{}}, "third")
	if e2.Released() {
		t.Fatal("released with a filter that cannot tell")
	}
}
