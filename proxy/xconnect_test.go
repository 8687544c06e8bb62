package proxy

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	_ "github.com/wasmproxy/wasmproxy/proxy/xconnect" // extended CONNECT on in this test binary, as in cmd/wasmproxy
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/websocket"
)

// wsWriteFrame writes one final text frame (RFC 6455 §5.2), masked as a
// client must, unmasked as a server does.
func wsWriteFrame(w io.Writer, payload []byte, mask bool) error {
	b := []byte{0x81}
	var m byte
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := payload
	if mask {
		key := []byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key...)
		p = make([]byte, len(payload))
		for i := range payload {
			p[i] = payload[i] ^ key[i%4]
		}
	}
	_, err := w.Write(append(b, p...))
	return err
}

// wsReadFrame reads one frame and returns its opcode and payload,
// unmasked.
func wsReadFrame(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	if n > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, p, nil
}

// wsAccept is Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	s := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(s[:])
}

// h2WebSocketUpstream is a WebSocket echo server over HTTP/2 (RFC 8441)
// on x/net/http2 with extended CONNECT on: it accepts an extended
// CONNECT with :protocol websocket, answers 200, and echoes each text
// frame as "echo: ...".
func h2WebSocketUpstream(t *testing.T, seen chan<- string) string {
	t.Helper()
	return upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Header.Get(":protocol") != "websocket" {
			http.Error(w, "extended CONNECT websocket only", http.StatusBadRequest)
			return
		}
		seen <- r.Method + " " + r.URL.Path + " " + r.Header.Get(":protocol") + " upgrade=" + r.Header.Get("Upgrade") + " connection=" + r.Header.Get("Connection")
		if key := r.Header.Get("Sec-Websocket-Key"); key != "" {
			// RFC 8441 has no accept key; an HTTP/1.1 client checks
			// one, which a server behind a converting proxy (such as
			// another Envoy in front of an HTTP/1.1 origin) returns.
			w.Header().Set("Sec-Websocket-Accept", wsAccept(key))
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		if rc.Flush() != nil {
			return
		}
		for {
			op, p, err := wsReadFrame(r.Body)
			if err != nil || op == 8 {
				return
			}
			if wsWriteFrame(w, append([]byte("echo: "), p...), false) != nil || rc.Flush() != nil {
				return
			}
		}
	}), &http2.Server{}).ServeHTTP)
}

// h1WebSocketUpstream is a real HTTP/1.1 WebSocket echo server
// (x/net/websocket) answering each message with "echo: ...". seen
// receives each handshake's method, path, Upgrade and Connection.
func h1WebSocketUpstream(t *testing.T, seen chan<- string) string {
	t.Helper()
	ws := websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil {
				return
			}
			if websocket.Message.Send(ws, "echo: "+msg) != nil {
				return
			}
		}
	})
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path + " upgrade=" + r.Header.Get("Upgrade") + " connection=" + r.Header.Get("Connection")
		ws.ServeHTTP(w, r)
	})
}

// allowConnect is the listener adjustment of
// http2_protocol_options.allow_connect.
func allowConnect(l *config.Listener) { l.FilterChains[0].HTTP.HTTP2.AllowConnect = true }

// webSocketAllowConnect enables websocket upgrades and allow_connect.
func webSocketAllowConnect(l *config.Listener) { enableWebSocket(l); allowConnect(l) }

// dialH2WebSocket opens WebSocket over HTTP/2 (RFC 8441) to the proxy
// at addr with x/net's HTTP/2 client: an extended CONNECT with
// :protocol websocket, the stream's DATA then carrying frames.
func dialH2WebSocket(ctx context.Context, addr, key string) (*http.Response, *io.PipeWriter, func(), error) {
	tr := h2cTransport()
	pr, pw := io.Pipe()
	req := (&http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "http", Host: addr, Path: "/chat"}, Host: addr, Body: pr, Header: http.Header{
		":protocol":             {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {key},
		"Origin":                {"http://" + addr},
	}}).WithContext(ctx)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		_ = pw.Close()
		tr.CloseIdleConnections()
		return nil, nil, nil, err
	}
	return resp, pw, func() { _ = pw.Close(); _ = resp.Body.Close(); tr.CloseIdleConnections() }, nil
}

// TestWebSocketOverHTTP2: WebSocket over HTTP/2 (RFC 8441) through the
// proxy, both ways, as Envoy converts it. From an HTTP/2 client, an
// extended CONNECT on a connection manager with allow_connect reaches
// an HTTP/1.1 WebSocket server as a GET upgrade (the real x/net
// websocket server accepts its handshake) and its 101 comes back as a
// 200 without Upgrade/Connection; to an HTTP/2 cluster it goes on as an
// extended CONNECT. From a real HTTP/1.1 WebSocket client, the upgrade
// goes to an HTTP/2 cluster as an extended CONNECT and its 200 comes
// back as the 101. Messages then echo both ways.
func TestWebSocketOverHTTP2(t *testing.T) {
	seen := make(chan string, 4)
	h1up := h1WebSocketUpstream(t, seen)
	h2up := h2WebSocketUpstream(t, seen)
	for _, tc := range []struct {
		name       string
		downstream string
		h2cluster  bool
		upstream   string
		want       string // the upstream's view of the handshake
	}{
		{"h2 to h1", "HTTP/2", false, h1up, "GET /chat upgrade=websocket connection=Upgrade"},
		{"h2 to h2", "HTTP/2", true, h2up, "CONNECT /chat websocket upgrade= connection="},
		{"h1 to h2", "HTTP/1.1", true, h2up, "CONNECT /chat websocket upgrade= connection="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := staticCluster("web", tc.upstream)
			cl.HTTP2 = tc.h2cluster
			h := &hooks{}
			f := startWith(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, webSocketAllowConnect, cl)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			send := func(msg string) error { return nil }
			recv := func() (string, error) { return "", nil }
			switch tc.downstream {
			case "HTTP/2":
				const key = "dGhlIHNhbXBsZSBub25jZQ=="
				resp, pw, done, err := dialH2WebSocket(ctx, f.addr, key)
				if err != nil {
					t.Fatalf("extended CONNECT through the proxy: %v", err)
				}
				defer done()
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status %d %q, want 200", resp.StatusCode, b)
				}
				for _, k := range []string{"Upgrade", "Connection"} {
					if v := resp.Header.Get(k); v != "" {
						t.Fatalf("200 to an extended CONNECT has %s: %q", k, v)
					}
				}
				if !tc.h2cluster {
					if got := resp.Header.Get("Sec-Websocket-Accept"); got != wsAccept(key) {
						t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
					}
				}
				send = func(msg string) error { return wsWriteFrame(pw, []byte(msg), true) }
				recv = func() (string, error) {
					_, p, err := wsReadFrame(resp.Body)
					return string(p), err
				}
			case "HTTP/1.1":
				cfg, err := websocket.NewConfig("ws://"+f.addr+"/chat", "http://"+f.addr+"/")
				if err != nil {
					t.Fatal(err)
				}
				ws, err := websocket.DialConfig(cfg)
				if err != nil {
					t.Fatalf("handshake through the proxy: %v", err)
				}
				defer ws.Close()
				_ = ws.SetDeadline(time.Now().Add(60 * time.Second))
				send = func(msg string) error { return websocket.Message.Send(ws, msg) }
				recv = func() (string, error) {
					var msg string
					err := websocket.Message.Receive(ws, &msg)
					return msg, err
				}
			}
			if got := <-seen; got != tc.want {
				t.Fatalf("upstream saw %q, want %q", got, tc.want)
			}
			for i := range 3 {
				msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*20000))
				if err := send(msg); err != nil {
					t.Fatal(err)
				}
				if got, err := recv(); err != nil || got != "echo: "+msg {
					t.Fatalf("reply %d: %.40q, %v", i, got, err)
				}
			}
			if ev := strings.Join(h.events(), ","); !strings.Contains(ev, "decodeHeaders") {
				t.Fatalf("filter events %q: the upgrade did not run through the filters", ev)
			}
			if n := f.st.Counter("http.ingress_http.downstream_cx_upgrades_total").Value(); n != 1 {
				t.Fatalf("downstream_cx_upgrades_total %d, want 1", n)
			}
		})
	}
}

// TestExtendedConnectNotAllowed: without allow_connect the connection
// manager does not offer extended CONNECT (the process has it on: the
// SETTINGS of its connections leave it out), so x/net's client refuses
// to send one; a stream that carries :protocol anyway is reset. With
// allow_connect but websocket not in upgrade_configs, the extended
// CONNECT gets 403 as an HTTP/1.1 upgrade would.
func TestExtendedConnectNotAllowed(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached the upstream: %s %s", r.Method, r.URL)
	})
	t.Run("no allow_connect", func(t *testing.T) {
		f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, enableWebSocket, staticCluster("web", up))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, _, _, err := dialH2WebSocket(ctx, f.addr, "dGhlIHNhbXBsZSBub25jZQ==")
		if err == nil || !strings.Contains(err.Error(), "extended connect not supported by peer") {
			t.Fatalf("extended CONNECT without allow_connect: %v, want the client's refusal (SETTINGS_ENABLE_CONNECT_PROTOCOL not offered)", err)
		}
	})
	t.Run("websocket not enabled", func(t *testing.T) {
		f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, allowConnect, staticCluster("web", up))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		resp, _, done, err := dialH2WebSocket(ctx, f.addr, "dGhlIHNhbXBsZSBub25jZQ==")
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
	})
}

// TestExtendedConnectSettings: a raw HTTP/2 client (x/net's Framer)
// reads the proxy's SETTINGS: SETTINGS_ENABLE_CONNECT_PROTOCOL is 1 on
// a connection manager with allow_connect and absent without it, the
// other settings unchanged either way; without it, a stream that sends
// :protocol anyway is reset, and
// the connection goes on serving.
func TestExtendedConnectSettings(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("allow_connect=%v", allow), func(t *testing.T) {
			adjust := func(l *config.Listener) {
				enableWebSocket(l)
				l.FilterChains[0].HTTP.HTTP2.AllowConnect = allow
				l.FilterChains[0].HTTP.HTTP2.MaxConcurrentStreams = 77
			}
			f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, adjust, staticCluster("web", up))
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(c, c)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			fr1, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			sf, ok := fr1.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				t.Fatalf("first frame %v, want the server's SETTINGS", fr1)
			}
			v, has := sf.Value(http2.SettingEnableConnectProtocol)
			if allow != (has && v == 1) {
				t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL %d (present %v) with allow_connect %v", v, has, allow)
			}
			if n, _ := sf.Value(http2.SettingMaxConcurrentStreams); n != 77 {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 77 (the other settings kept)", n)
			}
			if allow {
				return // TestWebSocketOverHTTP2 sends extended CONNECTs here
			}
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			headers := func(fields ...string) []byte {
				hb.Reset()
				for i := 0; i < len(fields); i += 2 {
					_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
				}
				return append([]byte(nil), hb.Bytes()...)
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: headers(
				":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/chat", ":authority", f.addr, "sec-websocket-version", "13")}); err != nil {
				t.Fatal(err)
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: headers(
				":method", "GET", ":scheme", "http", ":path", "/after", ":authority", f.addr)}); err != nil {
				t.Fatal(err)
			}
			var reset, answered bool
			for !reset || !answered {
				fr1, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("reading frames (reset %v, answered %v): %v", reset, answered, err)
				}
				switch x := fr1.(type) {
				case *http2.SettingsFrame:
					if !x.IsAck() {
						_ = fr.WriteSettingsAck()
					}
				case *http2.RSTStreamFrame:
					if x.StreamID != 1 {
						t.Fatalf("stream %d reset (%v)", x.StreamID, x.ErrCode)
					}
					reset = true
				case *http2.HeadersFrame:
					if x.StreamID == 1 {
						t.Fatal("the extended CONNECT got an answer, want a reset")
					}
					answered = true
				case *http2.GoAwayFrame:
					t.Fatalf("GOAWAY %v", x.ErrCode)
				}
			}
		})
	}
}

// TestWebSocketThroughTwoProxies: Envoy's documented mesh hop — an
// HTTP/1.1 WebSocket client, a front proxy, HTTP/2 to a sidecar proxy,
// HTTP/1.1 to the WebSocket server. The front sends the upgrade as an
// extended CONNECT, the sidecar (allow_connect) turns it back into the
// HTTP/1.1 upgrade; the real x/net client and server complete their
// handshake (Sec-WebSocket-Accept checked) and echo messages. A sidecar
// without allow_connect does not offer extended CONNECT, and the front
// answers 503.
func TestWebSocketThroughTwoProxies(t *testing.T) {
	seen := make(chan string, 4)
	origin := h1WebSocketUpstream(t, seen)
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("sidecar allow_connect=%v", allow), func(t *testing.T) {
			sidecar := startWith(t, []*config.Route{prefixRoute("/", "app")}, nil, loader{}, func(l *config.Listener) {
				enableWebSocket(l)
				l.FilterChains[0].HTTP.HTTP2.AllowConnect = allow
			}, staticCluster("app", origin))
			mesh := staticCluster("sidecar", sidecar.addr)
			mesh.HTTP2 = true
			front := startWith(t, []*config.Route{prefixRoute("/", "sidecar")}, nil, loader{}, enableWebSocket, mesh)
			cfg, err := websocket.NewConfig("ws://"+front.addr+"/chat", "http://"+front.addr+"/")
			if err != nil {
				t.Fatal(err)
			}
			if !allow {
				req, _ := http.NewRequest(http.MethodGet, "http://"+front.addr+"/chat", nil)
				req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
				resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("upgrade through a sidecar without allow_connect: %d, want 503", resp.StatusCode)
				}
				return
			}
			ws, err := websocket.DialConfig(cfg)
			if err != nil {
				t.Fatalf("handshake through both proxies: %v", err)
			}
			defer ws.Close()
			_ = ws.SetDeadline(time.Now().Add(60 * time.Second))
			if got := <-seen; got != "GET /chat upgrade=websocket connection=Upgrade" {
				t.Fatalf("origin saw %q", got)
			}
			for i := range 3 {
				msg := fmt.Sprintf("message %d %s", i, strings.Repeat("y", i*30000))
				if err := websocket.Message.Send(ws, msg); err != nil {
					t.Fatal(err)
				}
				var got string
				if err := websocket.Message.Receive(ws, &got); err != nil || got != "echo: "+msg {
					t.Fatalf("reply %d: %.40q, %v", i, got, err)
				}
			}
		})
	}
}
