package proxy

import (
	"net"
	"net/http"
	"os"
	"strings"

	"golang.org/x/net/http2"
)

// Extended CONNECT (RFC 8441, WebSocket over HTTP/2) downstream. Envoy
// offers it on a connection manager with
// http2_protocol_options.allow_connect and turns such a stream into the
// HTTP/1.1 upgrade it stands for; x/net/http2 offers it for the whole
// process or not at all (GODEBUG=http2xconnect=1, read in its init; the
// proxy/xconnect package sets it for the wasmproxy binary). So:
// extendedConnect says whether the library offers it, and a connection
// manager without allow_connect takes the offer back from its
// connections' SETTINGS (withoutConnectProtocol) and resets a stream
// that carries :protocol anyway, as Envoy's codec does when it did not
// offer it.

// extendedConnect is whether x/net/http2 offers extended CONNECT: the
// test its init made (this package's init runs after it, and nothing
// changes GODEBUG in between).
var extendedConnect = strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1")

// serveExtendedConnectH2 serves an HTTP/2 extended CONNECT as Envoy does
// (transformUpgradeRequestFromH2toH1): the filters and the router see
// the HTTP/1.1 upgrade, a GET with Upgrade: <:protocol> and Connection:
// upgrade, whose type upgrade_configs must enable as any; the upstream's
// 101 goes to the client as a 200 (statusWriter) and the stream's DATA
// are the tunnel, as a CONNECT's (serveTunnelH2).
func (cm *connManager) serveExtendedConnectH2(w http.ResponseWriter, r *http.Request, protocol string) {
	u := newUpgrade(http.MethodGet, protocol)
	if !cm.cfg.HTTP2.AllowConnect || u == nil {
		// Not offered here (or h2c, no upgrade): a malformed request,
		// its stream reset.
		panic(http.ErrAbortHandler)
	}
	dr := netHTTPRequest(r)
	dr.Method = http.MethodGet
	h := requestHeaderMap(r)
	h.Set(":method", http.MethodGet)
	h.Del(":protocol")
	h.Set("upgrade", protocol)
	h.Set("connection", "upgrade")
	cm.serveTunnelH2(w, r, u, dr, h)
}

// withoutConnectProtocol takes SETTINGS_ENABLE_CONNECT_PROTOCOL out of
// the server's first SETTINGS frame (its preface) written on c: the
// connection does not offer extended CONNECT. The frames after it pass
// unchanged.
type withoutConnectProtocol struct {
	net.Conn
	head []byte // the start of the stream, held until its first frame is whole
	done bool
}

func (c *withoutConnectProtocol) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.head = append(c.head, p...)
	if len(c.head) < 9 {
		return len(p), nil
	}
	length := int(c.head[0])<<16 | int(c.head[1])<<8 | int(c.head[2])
	if http2.FrameType(c.head[3]) == http2.FrameSettings && len(c.head) < 9+length {
		return len(p), nil
	}
	c.done = true
	out := c.head
	c.head = nil
	if http2.FrameType(out[3]) == http2.FrameSettings && length%6 == 0 {
		kept := out[:9:9]
		for i := 9; i < 9+length; i += 6 {
			if http2.SettingID(uint16(out[i])<<8|uint16(out[i+1])) != http2.SettingEnableConnectProtocol {
				kept = append(kept, out[i:i+6]...)
			}
		}
		n := len(kept) - 9
		kept[0], kept[1], kept[2] = byte(n>>16), byte(n>>8), byte(n)
		out = append(kept, out[9+length:]...)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
