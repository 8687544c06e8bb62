package proxytest

import "github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"

// EmulatorOption configures NewHostEmulator: the plugin to run and what
// the host gives it. Its methods return the option for chaining.
type EmulatorOption struct {
	context             any // types.VMContext or one of the ...ContextFactory types
	pluginConfiguration []byte
	vmConfiguration     []byte
	properties          map[string][]byte
}

// NewEmulatorOption returns options for a plugin that does nothing
// (types.DefaultVMContext) with empty configurations.
func NewEmulatorOption() *EmulatorOption {
	return &EmulatorOption{context: &types.DefaultVMContext{}}
}

// WithVMContext runs the plugin whose root is vm, as
// proxywasm.SetVMContext registers it.
func (o *EmulatorOption) WithVMContext(vm types.VMContext) *EmulatorOption {
	o.context = vm
	return o
}

// WithPluginContext runs a plugin made of the PluginContexts newPlugin
// creates, as proxywasm.SetPluginContext registers it.
func (o *EmulatorOption) WithPluginContext(newPlugin types.PluginContextFactory) *EmulatorOption {
	o.context = newPlugin
	return o
}

// WithHttpContext runs a plugin made of the HttpContexts newHttp creates,
// as proxywasm.SetHttpContext registers it.
func (o *EmulatorOption) WithHttpContext(newHttp types.HttpContextFactory) *EmulatorOption {
	o.context = newHttp
	return o
}

// WithTcpContext runs a plugin made of the TcpContexts newTcp creates, as
// proxywasm.SetTcpContext registers it.
func (o *EmulatorOption) WithTcpContext(newTcp types.TcpContextFactory) *EmulatorOption {
	o.context = newTcp
	return o
}

// WithPluginConfiguration sets the plugin configuration
// (proxywasm.GetPluginConfiguration; its size is passed to
// OnPluginStart).
func (o *EmulatorOption) WithPluginConfiguration(data []byte) *EmulatorOption {
	o.pluginConfiguration = data
	return o
}

// WithVMConfiguration sets the VM configuration
// (proxywasm.GetVMConfiguration; its size is passed to OnVMStart).
func (o *EmulatorOption) WithVMConfiguration(data []byte) *EmulatorOption {
	o.vmConfiguration = data
	return o
}

// WithProperty sets the property at path (what proxywasm.GetProperty
// returns for it), replacing an earlier value. The emulator knows no
// property it is not given: set the ones the plugin reads, in Envoy's
// encoding (strings as is, integers as 8-byte little-endian, maps in the
// header-pair encoding).
func (o *EmulatorOption) WithProperty(path []string, value []byte) *EmulatorOption {
	if o.properties == nil {
		o.properties = map[string][]byte{}
	}
	o.properties[string(serializePath(path))] = append([]byte(nil), value...)
	return o
}
