package filterchain

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// netScript is what one network filter answers; a nil func continues.
type netScript struct {
	newConnection func(cb filter.NetworkCallbacks) filter.NetworkStatus
	downstream    func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool, n int) filter.NetworkStatus
	upstream      func(cb filter.NetworkCallbacks, b *filter.Buffer, end bool, n int) filter.NetworkStatus
}

type testNetworkFilter struct {
	name   string
	s      netScript
	cb     filter.NetworkCallbacks
	log    *[]string
	nd, nu int
}

func netStatus(st filter.NetworkStatus) string {
	if st == filter.NetworkStopIteration {
		return "StopIteration"
	}
	return "Continue"
}

func (f *testNetworkFilter) add(format string, args ...any) {
	*f.log = append(*f.log, f.name+" "+fmt.Sprintf(format, args...))
}

func (f *testNetworkFilter) OnNewConnection() filter.NetworkStatus {
	st := filter.NetworkContinue
	if f.s.newConnection != nil {
		st = f.s.newConnection(f.cb)
	}
	f.add("newConnection %s", netStatus(st))
	return st
}

func (f *testNetworkFilter) OnDownstreamData(b *filter.Buffer, end bool) filter.NetworkStatus {
	in := string(b.Bytes)
	st := filter.NetworkContinue
	if f.s.downstream != nil {
		st = f.s.downstream(f.cb, b, end, f.nd)
	}
	f.nd++
	f.add("downstream(%q, end=%v) %s", in, end, netStatus(st))
	return st
}

func (f *testNetworkFilter) OnUpstreamData(b *filter.Buffer, end bool) filter.NetworkStatus {
	in := string(b.Bytes)
	st := filter.NetworkContinue
	if f.s.upstream != nil {
		st = f.s.upstream(f.cb, b, end, f.nu)
	}
	f.nu++
	f.add("upstream(%q, end=%v) %s", in, end, netStatus(st))
	return st
}

func (f *testNetworkFilter) OnUpstreamClose(p filter.PeerType)   { f.add("upstreamClose %d", p) }
func (f *testNetworkFilter) OnDownstreamClose(p filter.PeerType) { f.add("downstreamClose %d", p) }
func (f *testNetworkFilter) OnDestroy()                          { f.add("destroy") }

type testNetworkFactory struct{ f *testNetworkFilter }

func (tf testNetworkFactory) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	tf.f.cb = cb
	return tf.f
}

// testNetworkHost keeps the contract the way proxy/tcp_proxy.go does: a
// filter's Close closes the connection, after which nothing iterates.
type testNetworkHost struct {
	log    *[]string
	closed bool
}

func (h *testNetworkHost) DeliverRead(b []byte, end bool) {
	*h.log = append(*h.log, fmt.Sprintf("host read %q end=%v", b, end))
}

func (h *testNetworkHost) DeliverWrite(b []byte, end bool) {
	*h.log = append(*h.log, fmt.Sprintf("host write %q end=%v", b, end))
}

func (h *testNetworkHost) Close(details string) {
	*h.log = append(*h.log, "host close "+details)
	h.closed = true
}

func (h *testNetworkHost) Closing() bool { return h.closed }

func (h *testNetworkHost) ContinuedReading(i int) {
	*h.log = append(*h.log, fmt.Sprintf("continued reading f%d", i))
}

type networkTest struct {
	n       Network
	host    testNetworkHost
	filters []*testNetworkFilter
	log     []string
}

func newNetworkTest(scripts []netScript) *networkTest {
	t := &networkTest{}
	t.host.log = &t.log
	var factories []filter.NetworkFactory
	for i, s := range scripts {
		f := &testNetworkFilter{name: fmt.Sprintf("f%d", i), s: s, log: &t.log}
		t.filters = append(t.filters, f)
		factories = append(factories, testNetworkFactory{f})
	}
	t.n.Init(&t.host, &t.host, &filter.StreamInfo{}, factories)
	return t
}

type netStep func(t *networkTest)

// connect is the accepted connection: the read filters start before any
// data is read.
func connect(t *networkTest) { t.n.IterateRead(); t.n.Drain() }

func read(s string, end bool) netStep {
	return func(t *networkTest) {
		if s != "" {
			t.n.AppendRead([]byte(s))
		}
		if end {
			t.n.EndRead()
		}
		t.n.IterateRead()
		t.n.Drain()
	}
}

func write(s string, end bool) netStep {
	return func(t *networkTest) {
		if s != "" {
			t.n.AppendWrite([]byte(s))
		}
		if end {
			t.n.EndWrite()
		}
		t.n.IterateWrite()
		t.n.Drain()
	}
}

func continueReading(i int) netStep {
	return func(t *networkTest) {
		t.filters[i].cb.ContinueReading()
		t.n.Drain()
	}
}

func stopFirst(cb filter.NetworkCallbacks, b *filter.Buffer, end bool, n int) filter.NetworkStatus {
	if n == 0 {
		return filter.NetworkStopIteration
	}
	return filter.NetworkContinue
}

func stopAlways(filter.NetworkCallbacks, *filter.Buffer, bool, int) filter.NetworkStatus {
	return filter.NetworkStopIteration
}

func TestNetworkChain(t *testing.T) {
	cases := []struct {
		name    string
		filters []netScript
		steps   []netStep
		want    []string
	}{
		{
			name:    "every filter starts before data; client data in order, upstream data in reverse",
			filters: []netScript{{}, {}},
			steps:   []netStep{connect, read("ab", false), write("cd", false), read("", true), write("", true)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("ab", end=false) Continue`,
				`f1 downstream("ab", end=false) Continue`,
				`host read "ab" end=false`,
				`f1 upstream("cd", end=false) Continue`,
				`f0 upstream("cd", end=false) Continue`,
				`host write "cd" end=false`,
				`f0 downstream("", end=true) Continue`,
				`f1 downstream("", end=true) Continue`,
				`host read "" end=true`,
				`f1 upstream("", end=true) Continue`,
				`f0 upstream("", end=true) Continue`,
				`host write "" end=true`,
			},
		},
		{
			name: "a stop in OnNewConnection holds the later filters and the upstream until ContinueReading",
			filters: []netScript{{newConnection: func(filter.NetworkCallbacks) filter.NetworkStatus {
				return filter.NetworkStopIteration
			}}, {}},
			steps: []netStep{connect, continueReading(0)},
			want: []string{
				"f0 newConnection StopIteration",
				"continued reading f0",
				"f1 newConnection Continue",
				`host read "" end=false`,
			},
		},
		{
			name:    "data a filter stops stays in the read buffer: the next read restarts from the first filter with all of it",
			filters: []netScript{{}, {downstream: stopFirst}},
			steps:   []netStep{connect, read("ab", false), read("cd", false)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("ab", end=false) Continue`,
				`f1 downstream("ab", end=false) StopIteration`,
				`f0 downstream("abcd", end=false) Continue`,
				`f1 downstream("abcd", end=false) Continue`,
				`host read "abcd" end=false`,
			},
		},
		{
			name:    "ContinueReading passes the held data on from the next filter",
			filters: []netScript{{downstream: stopAlways}, {}},
			steps:   []netStep{connect, read("ab", false), continueReading(0)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("ab", end=false) StopIteration`,
				"continued reading f0",
				`f1 downstream("ab", end=false) Continue`,
				`host read "ab" end=false`,
			},
		},
		{
			name: "a filter's Close applies after its call; ContinueReading and reads are then ignored",
			filters: []netScript{{downstream: func(cb filter.NetworkCallbacks, _ *filter.Buffer, _ bool, _ int) filter.NetworkStatus {
				cb.Close("bye")
				cb.ContinueReading()
				return filter.NetworkStopIteration
			}}, {}},
			steps: []netStep{connect, read("ab", false), read("cd", false)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("ab", end=false) StopIteration`,
				"host close bye",
			},
		},
		{
			name: "a Close asked for in OnNewConnection applies before the next filter starts",
			filters: []netScript{{newConnection: func(cb filter.NetworkCallbacks) filter.NetworkStatus {
				cb.Close("early")
				return filter.NetworkContinue
			}}, {}},
			steps: []netStep{connect},
			want: []string{
				"f0 newConnection Continue",
				"host close early",
			},
		},
		{
			name:    "an end of stream without data is delivered once",
			filters: []netScript{{}, {}},
			steps:   []netStep{connect, read("", true), read("", false)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("", end=true) Continue`,
				`f1 downstream("", end=true) Continue`,
				`host read "" end=true`,
				`host read "" end=false`,
			},
		},
		{
			name:    "upstream data a write filter stops waits for the next upstream read and goes through every filter again",
			filters: []netScript{{upstream: stopFirst}, {}},
			steps:   []netStep{connect, write("ab", false), write("cd", false)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f1 upstream("ab", end=false) Continue`,
				`f0 upstream("ab", end=false) StopIteration`,
				`f1 upstream("abcd", end=false) Continue`,
				`f0 upstream("abcd", end=false) Continue`,
				`host write "abcd" end=false`,
			},
		},
		{
			name: "a filter may rewrite the data in place",
			filters: []netScript{{downstream: func(_ filter.NetworkCallbacks, b *filter.Buffer, _ bool, _ int) filter.NetworkStatus {
				b.Bytes = append([]byte(">"), b.Bytes...)
				return filter.NetworkContinue
			}}, {}},
			steps: []netStep{connect, read("ab", false)},
			want: []string{
				"f0 newConnection Continue",
				"f1 newConnection Continue",
				`host read "" end=false`,
				`f0 downstream("ab", end=false) Continue`,
				`f1 downstream(">ab", end=false) Continue`,
				`host read ">ab" end=false`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newNetworkTest(tc.filters)
			for _, s := range tc.steps {
				s(h)
			}
			if !slices.Equal(h.log, tc.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(h.log, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// Finish: upstream close in reverse order when the upstream was
// connected, then downstream close, then destroy.
func TestNetworkFinish(t *testing.T) {
	for _, connected := range []bool{true, false} {
		h := newNetworkTest([]netScript{{}, {}})
		h.n.Finish(connected, filter.PeerRemote, filter.PeerLocal)
		want := []string{"f1 upstreamClose 2", "f0 upstreamClose 2", "f0 downstreamClose 1", "f1 downstreamClose 1", "f0 destroy", "f1 destroy"}
		if !connected {
			want = want[2:]
		}
		if !slices.Equal(h.log, want) {
			t.Errorf("connected=%v: got %q, want %q", connected, h.log, want)
		}
	}
}

// The read buffer adopts a chunk when empty (no copy per read) and
// copies one appended to held data, which the caller may then reuse.
func TestNetworkAppendAdopts(t *testing.T) {
	h := newNetworkTest([]netScript{{downstream: stopAlways}})
	connect(h)
	first := []byte("ab")
	if !h.n.AppendRead(first) {
		t.Error("an empty read buffer did not adopt the chunk")
	}
	second := []byte("cd")
	if h.n.AppendRead(second) {
		t.Error("a chunk appended to held data was adopted")
	}
	second[0] = 'X'
	if got, _ := h.n.Buffered(); string(got) != "abcd" {
		t.Errorf("buffered %q, want %q", got, "abcd")
	}
}
