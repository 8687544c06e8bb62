package main

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// The compiled plugin (GOOS=wasip1) as a network filter on wasmproxy's
// real host, in front of a TCP proxy.
func TestPrependsPayload(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."))
	p.ExpectLog("debug", "ready to process streams")
	const pre = "prepend payload to downstream data"

	t.Run("one chunk", func(t *testing.T) {
		s := p.NewTCPStream()
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("hello"), false).ExpectContinue()
		s.ExpectUpstream(pre + "hello")
		s.Close()
	})
	t.Run("every chunk gets it", func(t *testing.T) {
		s := p.NewTCPStream()
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("first"), false).ExpectContinue()
		s.SendDownstream([]byte("second"), false).ExpectContinue()
		s.ExpectUpstream(pre + "first" + pre + "second")
		s.Close()
	})
	t.Run("data with the end of stream", func(t *testing.T) {
		s := p.NewTCPStream()
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("bye"), true).ExpectContinue()
		data, ended := s.Upstream()
		if string(data) != pre+"bye" || !ended {
			t.Errorf("the upstream got %q (ended %v), want %q and the end of stream", data, ended, pre+"bye")
		}
		s.Close()
	})
	t.Run("a bare end of stream gets no payload", func(t *testing.T) {
		s := p.NewTCPStream()
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("hello"), false).ExpectContinue()
		s.SendDownstream(nil, true).ExpectContinue()
		data, ended := s.Upstream()
		if string(data) != pre+"hello" || !ended {
			t.Errorf("the upstream got %q (ended %v), want %q and the end of stream", data, ended, pre+"hello")
		}
		s.Close()
	})
	t.Run("upstream data reaches the client unchanged", func(t *testing.T) {
		s := p.NewTCPStream()
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("ping"), false).ExpectContinue()
		s.SendUpstream([]byte("pong"), true).ExpectContinue()
		s.ExpectClient("pong")
		if closed, why := s.Closed(); closed {
			t.Errorf("the plugin closed the connection: %s", why)
		}
		s.Close()
	})
}
