package proxytest_test

import (
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// emulate starts an emulator for opt, released when the test ends.
func emulate(t *testing.T, opt *proxytest.EmulatorOption) proxytest.HostEmulator {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	return host
}

func TestStartVMAndPluginReadTheirConfigurations(t *testing.T) {
	var vmSize, pluginSize int
	vm := &vmFuncs{
		start: func(size int) types.OnVMStartStatus {
			vmSize = size
			cfg, err := proxywasm.GetVMConfiguration()
			proxywasm.LogInfof("vm config %q %v", cfg, err)
			return types.OnVMStartStatusOK
		},
		newPlugin: func(id uint32) types.PluginContext {
			proxywasm.LogDebugf("plugin context %d", id)
			return &pluginFuncs{
				start: func(size int) types.OnPluginStartStatus {
					pluginSize = size
					cfg, err := proxywasm.GetPluginConfiguration()
					proxywasm.LogInfof("plugin config %q %v", cfg, err)
					return string(cfg) == "good"
				},
				done: func() bool { proxywasm.LogInfo("done"); return false },
			}
		},
	}
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(vm).
		WithVMConfiguration([]byte("vm!")).WithPluginConfiguration([]byte("good")))
	if got := host.GetDebugLogs(); !slices.Equal(got, []string{"plugin context 1"}) {
		t.Errorf("NewPluginContext ran with %q, want it called for context 1 at NewHostEmulator", got)
	}
	if host.StartVM() != types.OnVMStartStatusOK || vmSize != 3 {
		t.Errorf("StartVM: OnVMStart got size %d", vmSize)
	}
	if host.StartPlugin() != types.OnPluginStartStatusOK || pluginSize != 4 {
		t.Errorf("StartPlugin: OnPluginStart got size %d", pluginSize)
	}
	if host.FinishVM() {
		t.Error("FinishVM returned true; the plugin's OnPluginDone said false")
	}
	want := []string{`vm config "vm!" <nil>`, `plugin config "good" <nil>`, "done"}
	if got := host.GetInfoLogs(); !slices.Equal(got, want) {
		t.Errorf("info logs = %q, want %q", got, want)
	}
}

func TestStartPluginFailsOnBadConfiguration(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{start: func(int) types.OnPluginStartStatus {
			_, err := proxywasm.GetPluginConfiguration()
			return err == nil
		}}
	}))
	if host.StartPlugin() != types.OnPluginStartStatusFailed {
		t.Error("StartPlugin succeeded; the plugin has no configuration and refuses to start without one")
	}
}

func TestLogsByLevel(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{start: func(int) types.OnPluginStartStatus {
			proxywasm.LogTrace("t")
			proxywasm.LogDebugf("d%d", 1)
			proxywasm.LogInfo("i")
			proxywasm.LogWarnf("w%s", "!")
			proxywasm.LogError("e")
			proxywasm.LogCritical("c")
			proxywasm.LogInfo("i2")
			if l, err := proxywasm.GetLogLevel(); err != nil || l != types.LogLevelTrace {
				proxywasm.LogErrorf("log level %v %v", l, err)
			}
			return true
		}}
	}))
	host.StartPlugin()
	for _, c := range []struct {
		got  []string
		want []string
	}{
		{host.GetTraceLogs(), []string{"t"}},
		{host.GetDebugLogs(), []string{"d1"}},
		{host.GetInfoLogs(), []string{"i", "i2"}},
		{host.GetWarnLogs(), []string{"w!"}},
		{host.GetErrorLogs(), []string{"e"}},
		{host.GetCriticalLogs(), []string{"c"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("logs = %q, want %q", c.got, c.want)
		}
	}
}

func TestTicks(t *testing.T) {
	ticks := 0
	host := emulate(t, proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext {
		return &pluginFuncs{
			start: func(int) types.OnPluginStartStatus {
				return proxywasm.SetTickPeriodMilliSeconds(250) == nil
			},
			tick: func() {
				ticks++
				if ticks == 2 {
					proxywasm.SetTickPeriodMilliSeconds(0)
				}
			},
		}
	}))
	if host.GetTickPeriod() != 0 {
		t.Fatal("a tick period before the plugin set one")
	}
	host.StartPlugin()
	if host.GetTickPeriod() != 250 {
		t.Fatalf("tick period %d, want 250", host.GetTickPeriod())
	}
	host.Tick()
	host.Tick()
	if ticks != 2 || host.GetTickPeriod() != 0 {
		t.Errorf("after two ticks: %d ticks ran, period %d; want 2 and 0", ticks, host.GetTickPeriod())
	}
}

func TestFactoryOptions(t *testing.T) {
	t.Run("http", func(t *testing.T) {
		host := emulate(t, proxytest.NewEmulatorOption().WithHttpContext(func(id uint32) types.HttpContext {
			return &httpFuncs{reqHeaders: func(int, bool) types.Action {
				proxywasm.LogInfof("stream %d", id)
				return types.ActionPause
			}}
		}))
		id := host.InitializeHttpContext()
		if host.CallOnRequestHeaders(id, nil, true) != types.ActionPause {
			t.Error("the factory's HttpContext did not run")
		}
		if logs := host.GetInfoLogs(); len(logs) != 1 || logs[0] != "stream "+itoa(id) {
			t.Errorf("logs %q", logs)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		host := emulate(t, proxytest.NewEmulatorOption().WithTcpContext(func(uint32) types.TcpContext {
			return &tcpFuncs{newConn: func() types.Action { return types.ActionPause }}
		}))
		if _, a := host.InitializeConnection(); a != types.ActionPause {
			t.Error("the factory's TcpContext did not run")
		}
	})
	t.Run("default does nothing", func(t *testing.T) {
		host := emulate(t, proxytest.NewEmulatorOption())
		if host.StartVM() != types.OnVMStartStatusOK || host.StartPlugin() != types.OnPluginStartStatusOK {
			t.Error("the default plugin refused to start")
		}
	})
}

func itoa(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

func TestContextIDsAreNeverReused(t *testing.T) {
	seen := map[uint32]bool{}
	for range 3 {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(bothPlugin()))
		for _, id := range []uint32{host.InitializeHttpContext(), func() uint32 { id, _ := host.InitializeConnection(); return id }()} {
			if id == proxytest.PluginContextID || seen[id] {
				t.Errorf("context id %d handed out twice", id)
			}
			seen[id] = true
		}
		reset()
	}
}

func TestOneEmulatorAtATime(t *testing.T) {
	_, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption())
	first := proxytest.CurrentABI()
	started := make(chan func())
	go func() {
		_, r := proxytest.NewHostEmulator(proxytest.NewEmulatorOption())
		started <- r
	}()
	for range 1000 {
		runtime.Gosched() // let the second NewHostEmulator run as far as it can
	}
	if proxytest.CurrentABI() != first {
		t.Error("a second emulator replaced the live one")
	}
	reset()
	reset() // reset is idempotent
	r := <-started
	if proxytest.CurrentABI() == first {
		t.Error("the second emulator did not take over after the first was reset")
	}
	r()
}

func TestPanicInNewPluginContextReleasesTheEmulator(t *testing.T) {
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "boom") {
				t.Errorf("recovered %v, want the plugin's panic", r)
			}
		}()
		proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithPluginContext(func(uint32) types.PluginContext { panic("boom") }))
	}()
	done := make(chan struct{})
	go func() {
		_, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption())
		reset()
		close(done)
	}()
	<-done // a leaked lock would hang here until the test binary's timeout
}

func TestResetUnregistersTheHost(t *testing.T) {
	_, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption())
	reset()
	if _, err := proxywasm.GetProperty([]string{"x"}); !errors.Is(err, types.ErrorUnimplemented) {
		t.Errorf("a host call after reset returned %v, want ErrorUnimplemented (no host)", err)
	}
	if proxytest.CurrentABI() != nil {
		t.Error("CurrentABI is not nil after reset")
	}
}

func TestNewWasmVMContextPointsToTheRunner(t *testing.T) {
	_, err := proxytest.NewWasmVMContext([]byte("\x00asm"))
	if !errors.Is(err, proxytest.ErrNoWasmRuntime) || !strings.Contains(err.Error(), "github.com/wasmproxy/wasmproxy/wasmtest/proxytest") {
		t.Errorf("NewWasmVMContext: %v", err)
	}
}

func TestUnknownContextsPanicWithTheReason(t *testing.T) {
	host := emulate(t, proxytest.NewEmulatorOption().WithVMContext(bothPlugin()))
	httpID := host.InitializeHttpContext()
	tcpID, _ := host.InitializeConnection()
	host.CompleteHttpContext(httpID)
	cases := map[string]struct {
		call func()
		want string
	}{
		"unknown":         {func() { host.CallOnRequestHeaders(999999, nil, true) }, "no HTTP context 999999"},
		"tcp as http":     {func() { host.CallOnRequestBody(tcpID, nil, true) }, "is a TCP connection"},
		"http as tcp":     {func() { host.CallOnDownstreamData(httpID, nil) }, "is an HTTP stream"},
		"completed":       {func() { host.CallOnResponseHeaders(httpID, nil, true) }, "was completed"},
		"unknown callout": {func() { host.CallOnHttpCallResponse(12345, nil, nil, nil) }, "no pending HTTP call 12345"},
		"unknown grpc":    {func() { host.CallOnGrpcReceive(12345, nil) }, "no pending gRPC call or stream 12345"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, c.want) {
					t.Errorf("panic %v, want one containing %q", r, c.want)
				}
			}()
			c.call()
		})
	}
	// A completed stream stays readable.
	if a := host.GetCurrentHttpStreamAction(httpID); a != types.ActionContinue {
		t.Errorf("action of the completed stream %v", a)
	}
}

func TestBadOptionPanics(t *testing.T) {
	defer func() {
		if s, _ := recover().(string); !strings.Contains(s, "want a types.VMContext") {
			t.Errorf("panic %q", s)
		}
	}()
	var opt proxytest.EmulatorOption // zero: no plugin at all
	proxytest.NewHostEmulator(&opt)
}

// bothPlugin serves HTTP streams and TCP connections, doing nothing.
func bothPlugin() types.VMContext {
	return &vmFuncs{newPlugin: func(uint32) types.PluginContext {
		return &pluginFuncs{
			newHttp: func(uint32) types.HttpContext { return &httpFuncs{} },
			newTcp:  func(uint32) types.TcpContext { return &tcpFuncs{} },
		}
	}}
}
