package proxy

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitAcked waits until the peer's kernel acknowledged every byte c sent
// (its send queue, SIOCOUTQ, is empty): on loopback the bytes are then
// in the peer's socket.
func waitAcked(t *testing.T, c net.Conn) {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Second); ; {
		var queued int
		var qerr error
		if err := raw.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			t.Fatal(err)
		}
		if qerr != nil {
			t.Fatal(qerr)
		}
		if queued == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d bytes still unacknowledged", queued)
		}
		time.Sleep(time.Millisecond) // polling the condition, not timing it
	}
}
