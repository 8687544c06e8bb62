package realistic_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLegacyHTTP1EdgeBehaves runs legacy_http1_edge with a raw HTTP/1.1
// service on loopback: the service sees the client's header names as
// the client spelled them (and the proxy's own in Proper-Case), the
// client sees the service's names and reason phrase as the service
// wrote them; a header name with an underscore gets 400 (a local reply,
// which carries no formatter: lower-case names, as in Envoy) and the
// connection closes.
func TestLegacyHTTP1EdgeBehaves(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	heads := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					heads <- head.String()
					io.WriteString(c, "HTTP/1.1 200 Legacy OK\r\nX-Session-ID: 7\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	_, upPort, _ := net.SplitHostPort(ln.Addr().String())
	cfg := loadTestdata(t, "legacy_http1_edge",
		"address: 0.0.0.0, port_value: 8080", "address: 127.0.0.1, port_value: 0",
		"address: legacy-service, port_value: 8000", "address: 127.0.0.1, port_value: "+upPort)
	p := runProxy(t, cfg)

	c, err := net.Dial("tcp", p.Addr("legacy_edge"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	readHead := func() []string {
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("response: %v (so far %q)", err, lines)
			}
			if line == "\r\n" {
				return lines
			}
			lines = append(lines, strings.TrimSuffix(line, "\r\n"))
		}
	}
	contains := func(lines []string, prefix string) bool {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}

	io.WriteString(c, "GET /orders HTTP/1.1\r\nHost: edge\r\nX-Legacy-Token: abc\r\nSOAPAction: urn:list\r\n\r\n")
	var head string
	select {
	case head = <-heads:
	case <-time.After(30 * time.Second):
		t.Fatal("the service got no request")
	}
	up := strings.Split(head, "\r\n")
	for _, want := range []string{"Host: edge", "X-Legacy-Token: abc", "SOAPAction: urn:list", "X-Forwarded-Proto: http", "X-Request-Id: "} {
		if !contains(up, want) {
			t.Errorf("service saw %q, want a line %q", up, want)
		}
	}
	resp := readHead()
	if resp[0] != "HTTP/1.1 200 Legacy OK" {
		t.Errorf("status line %q", resp[0])
	}
	for _, want := range []string{"X-Session-ID: 7", "Content-Length: 2", "X-Envoy-Upstream-Service-Time: ", "Server: "} {
		if !contains(resp, want) {
			t.Errorf("client saw %q, want a line %q", resp, want)
		}
	}
	if body := make([]byte, 2); true {
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "ok" {
			t.Fatalf("body %q: %v", body, err)
		}
	}

	io.WriteString(c, "GET /orders HTTP/1.1\r\nHost: edge\r\nX_Legacy: 1\r\n\r\n")
	resp = readHead()
	if !strings.HasPrefix(resp[0], "HTTP/1.1 400 ") || !contains(resp, "connection: close") {
		t.Errorf("underscore: %q, want a 400 that closes", resp)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("the connection did not end cleanly after the 400: %v", err)
	}
}
