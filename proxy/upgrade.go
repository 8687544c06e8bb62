package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// upgrade is a request that asks to switch protocols: an HTTP/1.1
// request with an Upgrade header, or a CONNECT (HTTP/1.1 or HTTP/2).
// It rides in the request's context from the server to the HTTP/1.1
// pool. The stream refuses it unless upgrade_configs enable its type
// for its route (checkUpgrade); else the pool writes Connection/Upgrade
// upstream (they are hop-by-hop and otherwise dropped; not for a
// CONNECT) and, on a 101 (a CONNECT's 2xx, or a terminated CONNECT's
// connect), hands over its connection (conn), which the server then
// splices to the client's (pipe). An HTTP/2 cluster's transport hands
// over a stream instead (h2, connect.go).
type upgrade struct {
	value string  // the request's Upgrade value, sent upstream as it came
	conn  *h1Conn // set by the pool on the switch; the server destroys it
	h2    *h2Tunnel
	// typ is the upgrade type upgrade_configs name ("connect" for a
	// CONNECT request, else value lower-cased); connect marks a CONNECT
	// request, proxied as one unless terminate (the route's
	// connect_config: the pool hands over a raw connection, connect.go).
	typ       string
	connect   bool
	terminate bool
	// post marks a POST terminated as a CONNECT (connect_config's
	// allow_post): the upstream request's alone, not the stream's; its
	// connection carries the request and response bodies (connect.go).
	post bool
	// proxyHeader, for a terminated one, is the PROXY protocol header
	// written on its connection before anything else
	// (connect_config.proxy_protocol_config; connect.go).
	proxyHeader []byte
	// active: counted in downstream_cx_upgrades_active until end.
	active *hcmStats
	// limits are the stream's timeouts that go on bounding its tunnel,
	// taken when the stream ends (tunnelLimits).
	limits tunnelLimits
}

// tunnelLimits are the timeouts of the stream that carries a tunnel,
// which Envoy keeps running for the tunnel's life, since the stream
// lives as long as it does: its idle timeout (the route's idle_timeout,
// else the connection manager's stream_idle_timeout), reset by bytes
// either way, and the end its max_stream_duration set. Either ends the
// tunnel (a reset: the HTTP/1 connection closes, the HTTP/2 stream is
// reset), counted as the stream's timeouts are.
type tunnelLimits struct {
	idle  time.Duration // 0: none
	maxAt time.Time     // zero: none
	stats *hcmStats
}

// tunnelLimits are the stream's timeouts as its tunnel inherits them:
// the idle timeout the route left, the max_stream_duration end.
func (s *stream) tunnelLimits() tunnelLimits {
	t := &s.timers
	t.mu.Lock()
	defer t.mu.Unlock()
	return tunnelLimits{idle: t.idle, maxAt: t.maxAt, stats: &s.cm.stats}
}

// end is the end of the upgrade's stream and tunnel, if any: the
// active gauge drops, as Envoy's when its upgraded stream is destroyed.
func (u *upgrade) end() {
	if u.active != nil {
		u.active.upgradesActive.Add(-1)
		u.active = nil
	}
}

// tunnelled reports whether the upstream handed a tunnel over (a
// connection or an HTTP/2 stream), which release must end.
func (u *upgrade) tunnelled() bool { return u.conn != nil || u.h2 != nil }

// tunnel is the upstream side of the handed-over tunnel.
func (u *upgrade) tunnel() upstreamTunnel {
	if u.h2 != nil {
		return u.h2
	}
	return h1Tunnel{u.conn}
}

// release ends the handed-over tunnel, spliced or not: the connection
// leaves its pool destroyed (never reused), the stream is reset.
func (u *upgrade) release() {
	if c := u.conn; c != nil {
		c.pool.endRequest()
		c.destroy(nil)
	}
	if u.h2 != nil {
		u.h2.close()
	}
}

// upstreamTunnel is the upstream side of a switched protocol: what the
// upstream sends (Read), the client's bytes for it (Write), and close,
// which ends both ways.
type upstreamTunnel interface {
	io.Reader
	io.Writer
	close()
}

// h1Tunnel is an upgraded HTTP/1.1 connection: bytes its reader had
// buffered come first.
type h1Tunnel struct{ c *h1Conn }

func (t h1Tunnel) Read(b []byte) (int, error)  { return t.c.br.Read(b) }
func (t h1Tunnel) Write(b []byte) (int, error) { return t.c.conn.Write(b) }
func (t h1Tunnel) close()                      { _ = t.c.conn.Close() }

// switched reports whether an upstream answer with this status hands
// the connection over: 101 to an upgrade, a 2xx to a CONNECT.
func (u *upgrade) switched(status int) bool {
	if u.connect {
		return status >= 200 && status < 300
	}
	return status == http.StatusSwitchingProtocols
}

// upgradeKey holds the upgrade in the stream's context (the server
// and the downstream sink read it); upstreamUpgradeKey in the routed
// upstream request's alone (the router puts it there, the pool reads
// it), so that a callout made with the stream's context is not an
// upgrade.
type (
	upgradeKey         struct{}
	upstreamUpgradeKey struct{}
)

// upgradeOf is the stream's enabled upgrade, nil for none.
func upgradeOf(ctx context.Context) *upgrade {
	u, _ := ctx.Value(upgradeKey{}).(*upgrade)
	return u
}

// upstreamUpgradeOf is the upgrade a routed upstream request carries.
func upstreamUpgradeOf(ctx context.Context) *upgrade {
	u, _ := ctx.Value(upstreamUpgradeKey{}).(*upgrade)
	return u
}

// newUpgrade is the upgrade an HTTP/1 request asks for (its Upgrade
// value, other than h2c, or a CONNECT), nil for none. Whether
// upgrade_configs enable it is decided once its route is known
// (checkUpgrade).
func newUpgrade(method, value string) *upgrade {
	if method == http.MethodConnect {
		return &upgrade{typ: config.UpgradeConnect, connect: true}
	}
	if value == "" || isH2CUpgrade(value) {
		return nil
	}
	// Compared case-insensitively, as Envoy does; a list of protocols
	// is not matched.
	return &upgrade{value: value, typ: strings.ToLower(strings.TrimSpace(value))}
}

// checkUpgrade refuses a stream's upgrade that neither its route's
// upgrade_configs nor the connection manager's enable, as Envoy's
// filter chain creation does with the route matched first: the stream
// then answers 403 (upgrade_failed) without running a filter.
func (s *stream) checkUpgrade() {
	u := upgradeOf(s.ctx)
	if u == nil || s.pathAction != pathContinue {
		return
	}
	if !config.UpgradeEnabled(s.route, s.cm.cfg.UpgradeTypes, u.typ) {
		s.cm.stats.upgradeFailed.Inc()
		s.pathAction = pathUpgradeFailed
		return
	}
	// Envoy's stats of an upgrade whose filter chain was made.
	s.cm.stats.upgradesTotal.Inc()
	s.cm.stats.upgradesActive.Add(1)
	u.active = &s.cm.stats
}

// splice copies bytes both ways between the client's connection (the
// 101 or 2xx already flushed) and the upgrade's upstream tunnel until
// either side ends or fails, or a limit ends it, then closes both
// (pipe).
func (sc *serverConn) splice(u *upgrade) {
	sc.setReadDeadline(time.Time{})
	_ = sc.rwc.SetDeadline(time.Time{})
	pipe(u.tunnel(), u.limits, func(b []byte) error {
		// Through the connection's writer (its lock orders it with any
		// write the server still makes).
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		if _, err := sc.bw.Write(b); err != nil {
			return err
		}
		return sc.bw.Flush()
	}, func(dst io.Writer) {
		// The close watch may hold a read on the client's reader; its
		// result is taken first (bytes it read stay buffered in sc.br).
		if _, err := sc.watch.wait(); err == nil {
			_, _ = io.Copy(dst, sc.br)
		}
	}, func() { _ = sc.rwc.Close() })
}

// pipe is the one splice of every protocol switch (a websocket 101, a
// CONNECT's 2xx, over HTTP/1.1 or HTTP/2 downstream, to an HTTP/1.1
// connection or an HTTP/2 stream upstream): the upstream tunnel t's
// bytes go to the client through toClient, and fromClient copies the
// client's into its argument, the tunnel, until either side ends or
// fails, or one of lim's timeouts runs out. Then both close
// (closeClient, and t): as Envoy's default, a half-close is not
// propagated. pipe reports whether a timeout ended the tunnel.
func pipe(t upstreamTunnel, lim tunnelLimits, toClient func([]byte) error, fromClient func(io.Writer), closeClient func()) (expired bool) {
	if h, ok := t.(h1Tunnel); ok {
		_ = h.c.conn.SetDeadline(time.Time{})
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			closeClient()
			t.close()
		})
	}
	// The timers act under mu, and not once the tunnel ended (ended):
	// a timer that fires, or re-arms itself, as pipe returns counts
	// nothing.
	var mu sync.Mutex
	var ended, timedOut bool
	expire := func(c *stats.Counter) { // under mu
		if !ended && !timedOut {
			timedOut = true
			c.Inc()
			closeBoth()
		}
	}
	var timers []*time.Timer
	defer func() {
		mu.Lock()
		ended = true
		for _, tm := range timers {
			tm.Stop()
		}
		mu.Unlock()
	}()
	var last atomic.Int64 // the last byte's time, as monoEpoch offsets
	mu.Lock()
	if lim.idle > 0 {
		last.Store(int64(time.Since(monoEpoch)))
		up := toClient
		toClient = func(b []byte) error {
			last.Store(int64(time.Since(monoEpoch)))
			return up(b)
		}
		t = activeTunnel{t, &last}
		var idle *time.Timer
		idle = time.AfterFunc(lim.idle, func() {
			mu.Lock()
			defer mu.Unlock()
			if rest := lim.idle - (time.Since(monoEpoch) - time.Duration(last.Load())); rest > 0 && !ended {
				idle.Reset(rest)
				return
			}
			expire(lim.stats.rqIdleTimeout)
		})
		timers = append(timers, idle)
	}
	if !lim.maxAt.IsZero() {
		timers = append(timers, time.AfterFunc(time.Until(lim.maxAt), func() {
			mu.Lock()
			defer mu.Unlock()
			expire(lim.stats.rqMaxDuration)
		}))
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer closeBoth()
		buf := make([]byte, 32<<10)
		for {
			n, err := t.Read(buf)
			if n > 0 {
				if toClient(buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	fromClient(t)
	closeBoth()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return timedOut
}

// activeTunnel is a tunnel whose reads and writes are activity for its
// idle timeout (pipe): last holds the time of the latest.
type activeTunnel struct {
	upstreamTunnel
	last *atomic.Int64
}

func (t activeTunnel) Read(b []byte) (int, error) {
	n, err := t.upstreamTunnel.Read(b)
	if n > 0 {
		t.last.Store(int64(time.Since(monoEpoch)))
	}
	return n, err
}

func (t activeTunnel) Write(b []byte) (int, error) {
	t.last.Store(int64(time.Since(monoEpoch)))
	return t.upstreamTunnel.Write(b)
}

// tunnel reports whether a response with this status to the request
// opens a tunnel: a CONNECT's 2xx, sent without framing fields (RFC
// 9110 §9.3.6), the connection spliced after it when the upstream
// handed its own over.
func (w *h1Response) tunnel(status int) bool {
	return w.method == http.MethodConnect && status >= 200 && status < 300
}
