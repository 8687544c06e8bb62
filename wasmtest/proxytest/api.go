package proxytest

import sdk "github.com/wasmproxy/wasmproxy/sdk/proxywasm/proxytest"

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
// a module given whole to WithVMContext (NewWasmVMContext without
// OnEmulator): that one runs on wasmproxy's real host, which the returned
// emulator drives and reads.
func NewHostEmulator(opt *EmulatorOption) (host HostEmulator, reset func()) {
	if opt != nil {
		if vm, ok := optionPlugin(opt).(*vmContext); ok && !vm.emulated {
			return newRealHost(vm, opt)
		}
	}
	return sdk.NewHostEmulator(opt)
}

func optionPlugin(opt *EmulatorOption) any {
	plugin, _, _, _ := sdk.OptionParts(opt)
	return plugin
}
