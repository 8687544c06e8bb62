package filterchain

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// passFilter continues everything; benchHost takes what passes.
type passFilter struct{}

func (passFilter) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passFilter) DecodeData(*filter.Buffer, bool) filter.DataStatus { return filter.DataContinue }
func (passFilter) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passFilter) EncodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passFilter) EncodeData(*filter.Buffer, bool) filter.DataStatus { return filter.DataContinue }
func (passFilter) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passFilter) OnLog()                                {}
func (passFilter) OnDestroy()                            {}
func (passFilter) OnNewConnection() filter.NetworkStatus { return filter.NetworkContinue }
func (passFilter) OnDownstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}
func (passFilter) OnUpstreamData(*filter.Buffer, bool) filter.NetworkStatus {
	return filter.NetworkContinue
}
func (passFilter) OnUpstreamClose(filter.PeerType)   {}
func (passFilter) OnDownstreamClose(filter.PeerType) {}

type passFactory struct{}

func (passFactory) NewStreamFilter(filter.Callbacks) filter.StreamFilter { return passFilter{} }
func (passFactory) NewNetworkFilter(filter.NetworkCallbacks) filter.NetworkFilter {
	return passFilter{}
}

type benchHost struct{ done bool }

func (h *benchHost) DeliverHeaders(filter.Direction, *filter.HeaderMap, bool) {}
func (h *benchHost) DeliverData(dir filter.Direction, _ []byte, end bool) {
	h.done = h.done || (dir == filter.Response && end)
}
func (h *benchHost) DeliverTrailers(filter.Direction, *filter.HeaderMap) {}
func (h *benchHost) SendLocalReply(int, []byte, []filter.Pair, string)   {}
func (h *benchHost) Reset(string)                                        {}
func (h *benchHost) PauseSource(filter.Direction)                        {}
func (h *benchHost) ResumeSource(filter.Direction)                       {}
func (h *benchHost) BufferOverflow(filter.Direction)                     {}
func (h *benchHost) Done() bool                                          { return h.done }
func (h *benchHost) DeliverRead([]byte, bool)                            {}
func (h *benchHost) DeliverWrite([]byte, bool)                           {}
func (h *benchHost) Close(string)                                        {}
func (h *benchHost) Closing() bool                                       { return false }

// BenchmarkHTTPStream is one stream through three filters that continue:
// Init, request headers and two body chunks, response headers and a
// body, Finish. Init's allocations are the whole cost: the data path
// allocates nothing.
func BenchmarkHTTPStream(b *testing.B) {
	factories := []filter.Factory{passFactory{}, passFactory{}, passFactory{}}
	reqH, respH := filter.NewHeaderMap(filter.Pair{Key: ":path", Value: "/"}), filter.NewHeaderMap(filter.Pair{Key: ":status", Value: "200"})
	chunk := []byte("0123456789abcdef")
	info := &filter.StreamInfo{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var e HTTP
		var h benchHost
		e.Init(&h, nil, info, factories, 1<<20, 1<<20)
		e.FeedHeaders(filter.Request, reqH, false)
		e.FeedData(filter.Request, chunk, false)
		e.FeedData(filter.Request, chunk, true)
		e.Drain()
		e.FeedHeaders(filter.Response, respH, false)
		e.FeedData(filter.Response, chunk, true)
		e.Drain()
		e.Finish()
	}
}

// BenchmarkNetworkData is one chunk each way through two network
// filters on an established connection.
func BenchmarkNetworkData(b *testing.B) {
	var n Network
	var h benchHost
	n.Init(&h, nil, &filter.StreamInfo{}, []filter.NetworkFactory{passFactory{}, passFactory{}})
	n.IterateRead()
	chunk := make([]byte, 16<<10)
	b.SetBytes(2 * int64(len(chunk)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		n.AppendRead(chunk)
		n.IterateRead()
		n.AppendWrite(chunk)
		n.IterateWrite()
		n.Drain()
	}
}
