package proxy

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// handoffListener is a bound TCP socket that can be handed from one
// consumer (an http.Server or a netListener's accept loop) to another
// without closing it, so a changed listener on the same address keeps
// accepting: the kernel queues connections while the new consumer takes
// over, and none is refused.
type handoffListener struct {
	*net.TCPListener
	retired   atomic.Bool // Accept answers net.ErrClosed
	handedOff atomic.Bool // Close leaves the socket open
	exited    chan struct{}
	exitOnce  sync.Once
	// carried are connections accepted after retirement (or handed on
	// from the previous consumer): the next consumer gets them first.
	mu      sync.Mutex
	carried []net.Conn
	// overload holds Accept back while stop_accepting_connections is on
	// (overload.go); nil without an overload manager.
	overload *overload
	// noConnLimit: the listener's ignore_global_conn_limit. overflow is
	// its downstream_global_cx_overflow counter: connections closed at
	// accept by the global downstream connections monitor.
	noConnLimit bool
	overflow    *stats.Counter
}

func newHandoff(tl *net.TCPListener) *handoffListener {
	return &handoffListener{TCPListener: tl, exited: make(chan struct{})}
}

// BindError is a listener whose address could not be bound (Start, or
// a reload adding a listener). Its text is "listener NAME: <the net
// error>"; callers that know where the address was configured (the
// library, the command) use Listener and Address to say so.
type BindError struct {
	Listener string // the listener's name
	Address  string // as configured, "host:port"
	Err      error  // from net.Listen; errors.Is(err, syscall.EADDRINUSE) when taken
}

func (e *BindError) Error() string { return fmt.Sprintf("listener %q: %v", e.Listener, e.Err) }
func (e *BindError) Unwrap() error { return e.Err }

// bindSocket binds a listener's address; its Accept waits while the
// overload manager stops accepting connections. The socket has
// SO_REUSEPORT unless the listener turns enable_reuse_port off (or the
// platform does not do it for TCP; reuseport_*.go).
func (s *Server) bindSocket(l *config.Listener) (*handoffListener, error) {
	name, addr := l.Name, l.Address
	var lc net.ListenConfig
	if reusePortSupported && !l.DisableReusePort {
		lc.Control = reusePortControl
	}
	ln, err := lc.Listen(context.Background(), listenNetwork(addr), addr)
	if err != nil {
		return nil, &BindError{Listener: name, Address: addr, Err: err}
	}
	h := newHandoff(ln.(*net.TCPListener))
	h.overload = s.overload
	s.setConnLimit(h, l)
	return h, nil
}

// setConnLimit applies listener l's place under the global downstream
// connections monitor to its socket (bound, or handed on by a reload).
func (s *Server) setConnLimit(h *handoffListener, l *config.Listener) {
	h.noConnLimit = l.IgnoreGlobalConnLimit
	h.overflow = s.opts.Stats.Counter(ListenerStatPrefix(l) + "downstream_global_cx_overflow")
}

func (h *handoffListener) Accept() (net.Conn, error) {
	h.mu.Lock()
	if len(h.carried) > 0 && !h.retired.Load() {
		c := h.carried[0]
		h.carried = h.carried[1:]
		h.mu.Unlock()
		return c, nil
	}
	h.mu.Unlock()
	if h.retired.Load() {
		h.exitOnce.Do(func() { close(h.exited) })
		return nil, net.ErrClosed
	}
	for {
		h.overload.waitAccept(&h.retired)
		c, err := h.TCPListener.Accept()
		if err == nil && !h.noConnLimit {
			// Envoy's rejectCxOverGlobalLimit: over the limit, the
			// connection is closed as it is accepted (counted first, so
			// the client that sees it closed finds it counted).
			lc, ok := h.overload.admit(c)
			if !ok {
				h.overflow.Inc()
				_ = c.Close()
				if !h.retired.Load() {
					continue
				}
			}
			c = lc
		}
		if h.retired.Load() {
			if err == nil && c != nil {
				// Accepted as the socket changed hands: the successor serves it.
				h.mu.Lock()
				h.carried = append(h.carried, c)
				h.mu.Unlock()
			}
			h.exitOnce.Do(func() { close(h.exited) })
			return nil, net.ErrClosed
		}
		return c, err
	}
}

func (h *handoffListener) Close() error {
	h.retired.Store(true)
	if h.handedOff.Load() {
		return nil
	}
	return h.TCPListener.Close()
}

// handOff stops this consumer's accepting (its Accept returns
// net.ErrClosed) and returns the same socket for the next consumer.
func (h *handoffListener) handOff() *handoffListener {
	h.handedOff.Store(true)
	h.retired.Store(true)
	_ = h.TCPListener.SetDeadline(time.Unix(1, 0)) // wakes a blocked Accept
	select {
	case <-h.exited:
	case <-time.After(2 * time.Second):
	}
	_ = h.TCPListener.SetDeadline(time.Time{})
	next := newHandoff(h.TCPListener)
	next.overload = h.overload
	next.noConnLimit, next.overflow = h.noConnLimit, h.overflow
	h.mu.Lock()
	next.carried, h.carried = h.carried, nil
	h.mu.Unlock()
	return next
}
