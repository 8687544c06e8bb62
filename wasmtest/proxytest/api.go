package proxytest

import (
	"reflect"
	"runtime"
	"strings"

	sdk "github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// The emulator's API, re-exported from the SDK's proxytest package so
// that one import serves both modes. See that package for the
// documentation.

type (
	// HostEmulator is sdk/proxywasm/proxytest.HostEmulator.
	HostEmulator = sdk.HostEmulator
	// EmulatorOption is sdk/proxywasm/proxytest.EmulatorOption.
	EmulatorOption = sdk.EmulatorOption
	// HttpCalloutAttribute is sdk/proxywasm/proxytest.HttpCalloutAttribute.
	HttpCalloutAttribute = sdk.HttpCalloutAttribute
	// GrpcCalloutAttribute is sdk/proxywasm/proxytest.GrpcCalloutAttribute.
	GrpcCalloutAttribute = sdk.GrpcCalloutAttribute
	// LocalHttpResponse is sdk/proxywasm/proxytest.LocalHttpResponse.
	LocalHttpResponse = sdk.LocalHttpResponse
	// WasmVMContext is sdk/proxywasm/proxytest.WasmVMContext.
	WasmVMContext = sdk.WasmVMContext
)

// PluginContextID is the id of the emulator's plugin (root) context.
const PluginContextID = sdk.PluginContextID

// NewEmulatorOption is sdk/proxywasm/proxytest.NewEmulatorOption.
func NewEmulatorOption() *EmulatorOption { return sdk.NewEmulatorOption() }

// NewHostEmulator is sdk/proxywasm/proxytest.NewHostEmulator, except for
// a compiled module (NewWasmVMContext without OnEmulator) given to
// WithVMContext, or whose factories (vm.NewPluginContext, a plugin
// context's NewHttpContext or NewTcpContext) are given to the other
// With...Context options: that module runs on wasmproxy's real host,
// which the returned emulator drives and reads.
func NewHostEmulator(opt *EmulatorOption) (host HostEmulator, reset func()) {
	if opt != nil {
		if vm := moduleOf(optionPlugin(opt)); vm != nil && !vm.emulated {
			return newRealHost(vm.file, opt)
		}
	}
	return sdk.NewHostEmulator(opt)
}

func optionPlugin(opt *EmulatorOption) any {
	plugin, _, _, _ := sdk.OptionParts(opt)
	return plugin
}

// moduleOf returns the compiled module plugin stands for, or nil. A
// factory is a func value, which cannot be traced to its receiver, so a
// method value of one of the factory methods (whatever its receiver's
// static type) is called to see what it makes: a module's factories do
// nothing to the module until what they return is used (see
// vmContext.NewPluginContext). Other factories are never called here.
func moduleOf(plugin any) *vmContext {
	switch f := plugin.(type) {
	case *vmContext:
		return f
	case types.PluginContextFactory:
		if factoryMethod(f, "NewPluginContext") {
			if c, ok := f(PluginContextID).(*pluginContext); ok {
				return c.m.vm
			}
		}
	case types.HttpContextFactory:
		if factoryMethod(f, "NewHttpContext") {
			if c, ok := f(PluginContextID + 1).(*streamContext); ok {
				return c.m.vm
			}
		}
	case types.TcpContextFactory:
		if factoryMethod(f, "NewTcpContext") {
			if c, ok := f(PluginContextID + 1).(*streamContext); ok {
				return c.m.vm
			}
		}
	}
	return nil
}

// factoryMethod reports whether f is a method value of a method named
// name (the compiler names its wrapper "....name-fm").
func factoryMethod(f any, name string) bool {
	fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer())
	return fn != nil && strings.HasSuffix(fn.Name(), "."+name+"-fm")
}
