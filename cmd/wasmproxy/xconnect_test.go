package main

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestExtendedConnectOn: the binary's import of proxy/xconnect runs
// before x/net/http2's init, so an x/net HTTP/2 server in this program
// offers RFC 8441 extended CONNECT in its SETTINGS (the proxy then
// takes the offer back per connection manager without allow_connect).
func TestExtendedConnectOn(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	go (&http2.Server{}).ServeConn(server, &http2.ServeConnOpts{Handler: http.NotFoundHandler()})
	_ = client.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = io.WriteString(client, http2.ClientPreface) }()
	fr, err := http2.NewFramer(io.Discard, client).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := fr.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", fr)
	}
	if v, ok := sf.Value(http2.SettingEnableConnectProtocol); !ok || v != 1 {
		t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL %d (present %v), want 1: extended CONNECT is off in the binary", v, ok)
	}
}
