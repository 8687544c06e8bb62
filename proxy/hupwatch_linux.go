package proxy

import (
	"sync"
	"syscall"
)

// hupWatch learns that an upstream closed a pooled HTTP/1.1 connection
// from an event loop, as Envoy's dispatcher does, instead of a
// non-blocking peek (a recvfrom that fails with EAGAIN) on every reuse
// of an idle connection (docs/decisions.md §73). Each connection's
// socket is registered once, when it opens, in an epoll set of the
// process's own for the peer's end of stream, a reset or an error
// (EPOLLRDHUP, EPOLLHUP, EPOLLERR, reported once). One goroutine waits on
// the set, blocked in epoll_wait on a thread of its own, and marks the
// connection hung up; the pool's checkout then reads a flag. A request
// costs no system call for it: the set is not told when a connection
// goes idle or busy, and the data the connection carries raises no
// event.
type hupWatch struct {
	once  sync.Once
	epfd  int // -1: no epoll set (the pool peeks instead)
	mu    sync.Mutex
	conns map[uint64]*h1Conn // by watch id, while the connection is open
	next  uint64
}

var hups hupWatch

func (w *hupWatch) start() {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		w.epfd = -1
		return
	}
	w.epfd = fd
	w.conns = map[uint64]*h1Conn{}
	go w.loop()
}

// watch registers c's socket; false: c is not watched (no socket, or
// no epoll set), and its checkout peeks.
func (c *h1Conn) watch() bool {
	if c.raw == nil {
		return false
	}
	w := &hups
	w.once.Do(w.start)
	if w.epfd < 0 {
		return false
	}
	w.mu.Lock()
	w.next++
	id := w.next
	w.conns[id] = c
	w.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR | syscall.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		err = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil || err != nil {
		w.mu.Lock()
		delete(w.conns, id)
		w.mu.Unlock()
		return false
	}
	c.watchID = id
	return true
}

// unwatch forgets a connection being destroyed (its socket leaves the
// epoll set when it is closed).
func (c *h1Conn) unwatch() {
	if c.watchID == 0 {
		return
	}
	hups.mu.Lock()
	delete(hups.conns, c.watchID)
	hups.mu.Unlock()
}

func (w *hupWatch) loop() {
	var evs [32]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(w.epfd, evs[:], -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		w.mu.Lock()
		for _, ev := range evs[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if c := w.conns[id]; c != nil {
				c.hup.Store(true)
				delete(w.conns, id)
			}
		}
		w.mu.Unlock()
	}
}
