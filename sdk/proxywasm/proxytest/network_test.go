package proxytest_test

import (
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// framePlugin prefixes each client message with "> " once it has a whole
// line, holding partial lines; it tags the upstream's replies and closes
// both sides on "bye".
func framePlugin(events *[]string) types.VMContext {
	return &vmFuncs{newPlugin: func(uint32) types.PluginContext {
		return &pluginFuncs{newTcp: func(uint32) types.TcpContext {
			return &tcpFuncs{
				newConn: func() types.Action { *events = append(*events, "new"); return types.ActionContinue },
				downstream: func(n int, eos bool) types.Action {
					b, _ := proxywasm.GetDownstreamData(0, n)
					if b[len(b)-1] != '\n' {
						return types.ActionPause
					}
					proxywasm.PrependDownstreamData([]byte("> "))
					if string(b) == "bye\n" {
						proxywasm.CloseDownstream()
						proxywasm.CloseUpstream()
					}
					return types.ActionContinue
				},
				upstream: func(n int, eos bool) types.Action {
					proxywasm.ReplaceUpstreamData([]byte("<reply>"))
					proxywasm.AppendUpstreamData([]byte("\n"))
					return types.ActionContinue
				},
				downstreamClose: func(p types.PeerType) { *events = append(*events, "downstream closed "+p.String()) },
				upstreamClose:   func(p types.PeerType) { *events = append(*events, "upstream closed "+p.String()) },
				done:            func() { *events = append(*events, "done") },
			}
		}}
	}}
}

func TestTcpData(t *testing.T) {
	var events []string
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(framePlugin(&events)))
	id, a := host.InitializeConnection()
	if a != types.ActionContinue {
		t.Fatalf("new connection: %v", a)
	}
	steps := []struct {
		data string
		want types.Action
	}{{"hel", types.ActionPause}, {"lo\n", types.ActionContinue}, {"bye\n", types.ActionContinue}}
	for _, s := range steps {
		if a := host.CallOnDownstreamData(id, []byte(s.data)); a != s.want {
			t.Errorf("downstream %q: %v, want %v", s.data, a, s.want)
		}
	}
	if got := string(host.GetForwardedDownstreamData(id)); got != "> hello\n> bye\n" {
		t.Errorf("forwarded downstream %q", got)
	}
	host.CallOnUpstreamData(id, []byte("anything"))
	if got := string(host.GetForwardedUpstreamData(id)); got != "<reply>\n" {
		t.Errorf("forwarded upstream %q", got)
	}
	if down, up := host.GetConnectionCloseRequests(id); !down || !up {
		t.Errorf("close requests: downstream %v, upstream %v", down, up)
	}
	host.CloseUpstreamConnection(id)
	host.CloseDownstreamConnection(id)
	host.CompleteConnection(id)
	want := []string{"new", "upstream closed local", "downstream closed local", "done"}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

// A connection held from OnNewConnection until a tick resumes it: the
// data received meanwhile goes on with ContinueTcpStream.
func TestTcpResumeFromTick(t *testing.T) {
	var conn uint32
	plugin := &pluginFuncs{tick: func() {
		proxywasm.SetEffectiveContext(conn)
		proxywasm.ContinueTcpStream()
	}}
	plugin.newTcp = func(id uint32) types.TcpContext {
		conn = id
		return &tcpFuncs{downstream: func(int, bool) types.Action { return types.ActionPause }}
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext { return plugin }))
	id, _ := host.InitializeConnection()
	host.CallOnDownstreamData(id, []byte("held"))
	if got := host.GetForwardedDownstreamData(id); len(got) != 0 {
		t.Fatalf("paused data forwarded: %q", got)
	}
	host.Tick()
	if got := string(host.GetForwardedDownstreamData(id)); got != "held" {
		t.Errorf("after the resume: forwarded %q", got)
	}
}
