package proxy

import (
	"context"
	"io"

	"slices"
	"strings"
	"sync"
	"time"
)

// upgrade is an HTTP/1.1 request whose Upgrade header names a type the
// connection manager's upgrade_configs enable. It rides in the
// request's context from the HTTP/1 server to the HTTP/1.1 pool: the
// pool writes Connection/Upgrade upstream (they are hop-by-hop and
// otherwise dropped) and, on a 101, hands over its connection (conn),
// which the server then splices to the client's.
type upgrade struct {
	value string  // the request's Upgrade value, sent upstream as it came
	conn  *h1Conn // set by the pool on a 101; the splice destroys it
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

// upgradeEnabled reports whether upgrade_configs enable the type an
// Upgrade header names (compared case-insensitively, as Envoy does; a
// list of protocols is not matched).
func (cm *connManager) upgradeEnabled(value string) bool {
	return slices.Contains(cm.cfg.UpgradeTypes, strings.ToLower(strings.TrimSpace(value)))
}

// splice copies bytes both ways between the client's connection (the
// 101 already flushed) and the upgraded upstream connection until
// either side ends or fails, then closes both: as Envoy, a half-close
// is not propagated. Bytes either reader had buffered go first.
func (sc *serverConn) splice(c *h1Conn) {
	_ = sc.rwc.SetDeadline(time.Time{})
	_ = c.conn.SetDeadline(time.Time{})
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = sc.rwc.Close()
			_ = c.conn.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		// Upstream to client, through the connection's writer (its lock
		// orders it with any write the server still makes).
		defer close(done)
		defer closeBoth()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.br.Read(buf)
			if n > 0 {
				sc.wmu.Lock()
				_, werr := sc.bw.Write(buf[:n])
				if werr == nil {
					werr = sc.bw.Flush()
				}
				sc.wmu.Unlock()
				if werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// Client to upstream: the close watch may hold a read on the
	// client's reader; its result is taken first (bytes it read stay
	// buffered in sc.br).
	if _, err := sc.watch.wait(); err == nil {
		_, _ = io.Copy(c.conn, sc.br)
	}
	closeBoth()
	<-done
}
