package filterchain

import "github.com/wasmproxy/wasmproxy/filter"

// NetworkHost is what the engine asks of the TCP connection that owns it.
// The engine calls it on the owner's goroutine only.
type NetworkHost interface {
	// DeliverRead hands what passed the last read filter to the chain's
	// terminal (the TCP proxy, or the HTTP connection manager behind the
	// filters): b, which may be empty (iteration reached the terminal,
	// which connects its upstream the first time), and end, true once,
	// when the client's half-close has passed. The host owns b.
	DeliverRead(b []byte, end bool)
	// DeliverWrite hands what passed the write filters (upstream data,
	// last filter first) to the client; end is true once, when the
	// upstream's half-close has passed. The host owns b.
	DeliverWrite(b []byte, end bool)
	// Close ends the connection: a filter asked for it (its
	// NetworkCallbacks.Close), applied between filter calls.
	Close(details string)
	// Closing reports that the connection is closing: iteration stops,
	// and a filter's ContinueReading does nothing.
	Closing() bool
}

// NetworkObserver sees what the engine decides that the host's methods do
// not show. Its methods run on the owner's goroutine.
type NetworkObserver interface {
	// ContinuedReading: filter i's ContinueReading is being applied.
	ContinuedReading(i int)
}

// Network runs one TCP connection's network filters with Envoy's
// iteration (Network::FilterManagerImpl): each filter's OnNewConnection
// before it first sees data; client data through the filters in order
// (read filters), where a stop keeps everything in the connection's read
// buffer, which the next read appends to, until the filter continues
// reading; upstream data through them in reverse (write filters). The
// owner embeds it and calls Init once.
type Network struct {
	host    NetworkHost
	obs     NetworkObserver
	info    *filter.StreamInfo
	filters []filter.NetworkFilter
	cbs     []networkCallbacks
	state   []networkState
	// read is Envoy's connection read buffer: client data the filters
	// have not passed on yet. write holds upstream data a write filter
	// stopped.
	read, write filter.Buffer
	// readEnd, writeEnd: that peer has half-closed. termReadEnd,
	// termWriteEnd: the half-close has been delivered.
	readEnd, writeEnd, termReadEnd, termWriteEnd bool
	queue
}

// networkState is where one filter stands.
type networkState struct {
	// started: OnNewConnection delivered. readEOS, writeEOS: the end of
	// stream was delivered with no data, so it is delivered once.
	started, readEOS, writeEOS bool
}

// Init makes one filter per factory, in order, each with its own
// callbacks. obs may be nil.
func (n *Network) Init(host NetworkHost, obs NetworkObserver, info *filter.StreamInfo, factories []filter.NetworkFactory) {
	n.host, n.obs, n.info = host, obs, info
	n.queue.init()
	n.filters = make([]filter.NetworkFilter, len(factories))
	n.cbs = make([]networkCallbacks, len(factories))
	n.state = make([]networkState, len(factories))
	for i, f := range factories {
		n.cbs[i] = networkCallbacks{n: n, index: i}
		n.filters[i] = f.NewNetworkFilter(&n.cbs[i])
	}
}

// AppendRead adds bytes read from the client to the read buffer. It
// adopts b when the buffer is empty (true: the engine owns b now);
// otherwise it copies b, which stays the caller's.
func (n *Network) AppendRead(b []byte) (adopted bool) { return appendBuffer(&n.read, b) }

// AppendWrite is AppendRead for bytes read from the upstream.
func (n *Network) AppendWrite(b []byte) (adopted bool) { return appendBuffer(&n.write, b) }

func appendBuffer(buf *filter.Buffer, b []byte) bool {
	if len(buf.Bytes) == 0 {
		buf.Bytes = b
		return true
	}
	buf.Bytes = append(buf.Bytes, b...)
	return false
}

// EndRead records that the client half-closed; EndWrite, the upstream.
func (n *Network) EndRead()  { n.readEnd = true }
func (n *Network) EndWrite() { n.writeEnd = true }

// ReadEnded and WriteEnded report the half-closes recorded.
func (n *Network) ReadEnded() bool  { return n.readEnd }
func (n *Network) WriteEnded() bool { return n.writeEnd }

// Buffered returns the bytes the filters hold: client data in the read
// buffer and upstream data a write filter stopped. They stay the
// engine's until Finish.
func (n *Network) Buffered() (read, write []byte) { return n.read.Bytes, n.write.Bytes }

// Started reports that iteration has begun (IterateRead ran).
func (n *Network) Started() bool { return len(n.state) == 0 || n.state[0].started }

// IterateRead runs the read buffer through the filters from the first,
// then into the terminal: Envoy's onRead / onContinueReading.
func (n *Network) IterateRead() { n.iterateRead(0) }

// iterateRead runs the read filters from position from. A filter not
// yet started gets OnNewConnection first; a stop or closing ends the
// iteration and the data stays buffered.
func (n *Network) iterateRead(from int) {
	h := n.host
	for i := from; i < len(n.filters); i++ {
		if h.Closing() {
			return
		}
		st := &n.state[i]
		if !st.started {
			st.started = true
			if n.filters[i].OnNewConnection() == filter.NetworkStopIteration {
				return
			}
			// A close or continue the filter asked for while starting
			// applies before its first data.
			n.Drain()
			if h.Closing() {
				return
			}
		}
		if len(n.read.Bytes) == 0 && (!n.readEnd || st.readEOS) {
			continue
		}
		if n.readEnd {
			st.readEOS = true
		}
		if n.filters[i].OnDownstreamData(&n.read, n.readEnd) == filter.NetworkStopIteration || h.Closing() {
			return
		}
	}
	if h.Closing() {
		return
	}
	b := n.read.Bytes
	n.read.Bytes = nil
	end := n.readEnd && !n.termReadEnd
	n.termReadEnd = n.readEnd
	h.DeliverRead(b, end)
}

// IterateWrite runs upstream data through the filters in reverse order
// (Envoy's write filters), then to the client.
func (n *Network) IterateWrite() {
	for i := len(n.filters) - 1; i >= 0; i-- {
		st := &n.state[i]
		if len(n.write.Bytes) == 0 && (!n.writeEnd || st.writeEOS) {
			continue
		}
		if n.writeEnd {
			st.writeEOS = true
		}
		if n.filters[i].OnUpstreamData(&n.write, n.writeEnd) == filter.NetworkStopIteration {
			return
		}
	}
	b := n.write.Bytes
	n.write.Bytes = nil
	end := n.writeEnd && !n.termWriteEnd
	n.termWriteEnd = n.writeEnd
	n.host.DeliverWrite(b, end)
}

// Drain runs the queued actions until none is left.
func (n *Network) Drain() {
	for fns := n.take(); len(fns) > 0; fns = n.take() {
		for _, fn := range fns {
			fn()
		}
	}
}

// Finish delivers the close events and releases the filters:
// OnUpstreamClose (in reverse order, when the upstream connection was
// made), then OnDownstreamClose, then OnDestroy. Nothing is called
// afterwards.
func (n *Network) Finish(upstreamConnected bool, upstream, downstream filter.PeerType) {
	if upstreamConnected {
		for i := len(n.filters) - 1; i >= 0; i-- {
			n.filters[i].OnUpstreamClose(upstream)
		}
	}
	for _, f := range n.filters {
		f.OnDownstreamClose(downstream)
	}
	for _, f := range n.filters {
		f.OnDestroy()
	}
}

// networkCallbacks are the filter.NetworkCallbacks of one filter on one
// connection.
type networkCallbacks struct {
	n     *Network
	index int
}

func (cb *networkCallbacks) ContinueReading() {
	n, i := cb.n, cb.index
	n.Post(func() {
		if n.host.Closing() {
			return
		}
		if n.obs != nil {
			n.obs.ContinuedReading(i)
		}
		n.iterateRead(i + 1)
	})
}

func (cb *networkCallbacks) Close(details string) {
	n := cb.n
	n.Post(func() { n.host.Close(details) })
}

func (cb *networkCallbacks) Info() *filter.StreamInfo { return cb.n.info }
