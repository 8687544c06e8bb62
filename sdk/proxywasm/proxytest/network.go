package proxytest

import (
	"fmt"
	"slices"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// tcpStream is one TCP connection through the plugin.
type tcpStream struct {
	// downstream is the client's data the plugin sees and edits in the
	// current (or last) OnDownstreamData: what it held by pausing, then
	// the new bytes; held keeps it across a pause. Likewise upstream.
	downstream, upstream         []byte
	downstreamHeld, upstreamHeld bool
	// forwarded... are the bytes passed on in each direction.
	forwardedDownstream, forwardedUpstream []byte

	closeDownstream, closeUpstream bool // the plugin asked to close
	done                           bool
}

func (e *hostEmulator) InitializeConnection() (uint32, types.Action) {
	id := newContextID()
	c := &tcpStream{}
	e.tcp[id] = c
	var a uint32
	e.call(id, func() {
		hostabi.Native.OnContextCreate(id, PluginContextID)
		a = hostabi.Native.OnNewConnection(id)
	})
	return id, checkTcpAction("InitializeConnection", a)
}

func checkTcpAction(method string, a uint32) types.Action {
	if a != uint32(types.ActionContinue) && a != uint32(types.ActionPause) {
		panic(fmt.Sprintf("proxytest: %s: the plugin returned action %d; a TCP callback returns ActionContinue or ActionPause", method, a))
	}
	return types.Action(a)
}

func (e *hostEmulator) conn(method string, contextID uint32) *tcpStream {
	c := e.connState(method, contextID)
	if c.done {
		panic(fmt.Sprintf("proxytest: %s: TCP context %d was completed (CompleteConnection)", method, contextID))
	}
	return c
}

func (e *hostEmulator) connState(method string, contextID uint32) *tcpStream {
	c, ok := e.tcp[contextID]
	if !ok {
		if _, http := e.http[contextID]; http {
			panic(fmt.Sprintf("proxytest: %s: context %d is an HTTP stream, not a TCP connection", method, contextID))
		}
		panic(fmt.Sprintf("proxytest: %s: no TCP context %d (InitializeConnection creates one)", method, contextID))
	}
	return c
}

func (e *hostEmulator) CallOnDownstreamData(contextID uint32, data []byte) types.Action {
	c := e.conn("CallOnDownstreamData", contextID)
	if !c.downstreamHeld {
		c.downstream = nil
	}
	c.downstream = append(slices.Clip(c.downstream), data...)
	var a uint32
	e.call(contextID, func() {
		a = hostabi.Native.OnDownstreamData(contextID, uint32(len(c.downstream)), false)
	})
	action := checkTcpAction("CallOnDownstreamData", a)
	c.downstreamHeld = action == types.ActionPause
	if !c.downstreamHeld {
		c.forwardedDownstream = append(c.forwardedDownstream, c.downstream...)
	}
	return action
}

func (e *hostEmulator) CallOnUpstreamData(contextID uint32, data []byte) types.Action {
	c := e.conn("CallOnUpstreamData", contextID)
	if !c.upstreamHeld {
		c.upstream = nil
	}
	c.upstream = append(slices.Clip(c.upstream), data...)
	var a uint32
	e.call(contextID, func() {
		a = hostabi.Native.OnUpstreamData(contextID, uint32(len(c.upstream)), false)
	})
	action := checkTcpAction("CallOnUpstreamData", a)
	c.upstreamHeld = action == types.ActionPause
	if !c.upstreamHeld {
		c.forwardedUpstream = append(c.forwardedUpstream, c.upstream...)
	}
	return action
}

// resumeDownstream passes on the downstream data the plugin held, as
// Envoy's continueReading does (proxywasm.ContinueTcpStream).
func (c *tcpStream) resumeDownstream() {
	if c.downstreamHeld {
		c.forwardedDownstream = append(c.forwardedDownstream, c.downstream...)
		c.downstreamHeld = false
	}
}

func (e *hostEmulator) CloseUpstreamConnection(contextID uint32) {
	e.conn("CloseUpstreamConnection", contextID)
	e.call(contextID, func() {
		hostabi.Native.OnUpstreamConnectionClose(contextID, uint32(types.PeerTypeLocal))
	})
}

func (e *hostEmulator) CloseDownstreamConnection(contextID uint32) {
	e.conn("CloseDownstreamConnection", contextID)
	e.call(contextID, func() {
		hostabi.Native.OnDownstreamConnectionClose(contextID, uint32(types.PeerTypeLocal))
	})
}

func (e *hostEmulator) CompleteConnection(contextID uint32) {
	c := e.conn("CompleteConnection", contextID)
	e.complete(contextID)
	c.done = true
}

func (e *hostEmulator) GetForwardedDownstreamData(contextID uint32) []byte {
	return slices.Clone(e.connState("GetForwardedDownstreamData", contextID).forwardedDownstream)
}

func (e *hostEmulator) GetForwardedUpstreamData(contextID uint32) []byte {
	return slices.Clone(e.connState("GetForwardedUpstreamData", contextID).forwardedUpstream)
}

func (e *hostEmulator) GetConnectionCloseRequests(contextID uint32) (downstream, upstream bool) {
	c := e.connState("GetConnectionCloseRequests", contextID)
	return c.closeDownstream, c.closeUpstream
}
