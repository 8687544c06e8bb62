package testnet

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

// FixedUpstream runs a minimal HTTP/1.1 upstream on raw sockets for the
// test: it reads each request's head and Content-Length body and
// answers "hello from the server" (21 bytes, keep-alive), allocating
// nothing per request, so that a benchmark's or an allocation test's
// counts are the proxy's own. It returns the server's address.
func FixedUpstream(t testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nhello from the server")
	return Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReaderSize(c, 4<<10)
		for {
			n, err := ReadHead(br)
			if err != nil {
				return
			}
			if _, err := br.Discard(n); err != nil {
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// ReadHead reads one HTTP/1.1 message head from br (a blank line before
// it skipped) and returns its Content-Length, 0 when absent. It
// understands only what a proxy and the upstreams of these tests send:
// it is a test's reader, not a parser for what a client may send.
func ReadHead(br *bufio.Reader) (int, error) {
	n := 0
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			if first {
				continue
			}
			return n, nil
		}
		const cl = "content-length:"
		if len(line) > len(cl) && strings.EqualFold(string(line[:len(cl)]), cl) {
			for _, c := range bytes.TrimSpace(line[len(cl):]) {
				n = n*10 + int(c-'0')
			}
		}
	}
}
