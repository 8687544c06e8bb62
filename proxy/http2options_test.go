package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2ProtocolOptions: the connection manager's
// http2_protocol_options reach the client as the server's SETTINGS and
// connection window, and connection_keepalive PINGs an idle connection
// and closes it when the PING goes unanswered.
func TestHTTP2ProtocolOptions(t *testing.T) {
	f := startYAML(t, `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          http2_protocol_options:
            max_concurrent_streams: 7
            initial_stream_window_size: 70000
            initial_connection_window_size: 200000
            hpack_table_size: 8192
            connection_keepalive: {interval: 0.05s, timeout: 0.1s}
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: /}, direct_response: {status: 200}}]
`, "")
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))

	settings := map[http2.SettingID]uint32{}
	var connWindow uint32
	var pinged bool
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			// The unanswered PING closed the connection.
			if !pinged {
				t.Fatalf("the connection ended before a keepalive PING: %v", err)
			}
			break
		}
		switch fr := frame.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				fr.ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
			}
		case *http2.WindowUpdateFrame:
			if fr.StreamID == 0 {
				connWindow += fr.Increment
			}
		case *http2.PingFrame:
			if !fr.IsAck() {
				pinged = true // not answered
			}
		}
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: 7,
		http2.SettingInitialWindowSize:    70000,
		http2.SettingHeaderTableSize:      8192,
	}
	for id, v := range want {
		if settings[id] != v {
			t.Errorf("SETTINGS %v = %d, want %d (all: %v)", id, settings[id], v, settings)
		}
	}
	if connWindow+65535 != 200000 {
		t.Errorf("connection window = %d, want 200000", connWindow+65535)
	}
}
