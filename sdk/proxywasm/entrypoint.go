package proxywasm

import "github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"

// SetVMContext registers the plugin's VMContext, the root of all its
// contexts. Call it (or one of SetPluginContext, SetHttpContext,
// SetTcpContext) exactly once, from main or from an init function; a later
// call replaces the earlier one. See the package documentation for how main
// is run in a c-shared module.
func SetVMContext(ctx types.VMContext) {
	state.vm = ctx
}

// SetPluginContext registers a factory of PluginContexts for plugins that
// need no VMContext of their own (and so ignore the VM configuration).
func SetPluginContext(newPluginContext func(contextID uint32) types.PluginContext) {
	SetVMContext(&factoryVMContext{newPluginContext: newPluginContext})
}

// SetHttpContext registers a factory of HttpContexts for HTTP plugins that
// need neither a VMContext nor a PluginContext: no configuration, no state
// shared between streams.
func SetHttpContext(newHttpContext func(contextID uint32) types.HttpContext) {
	SetPluginContext(func(uint32) types.PluginContext {
		return &factoryPluginContext{newHttpContext: newHttpContext}
	})
}

// SetTcpContext registers a factory of TcpContexts for TCP plugins that need
// neither a VMContext nor a PluginContext.
func SetTcpContext(newTcpContext func(contextID uint32) types.TcpContext) {
	SetPluginContext(func(uint32) types.PluginContext {
		return &factoryPluginContext{newTcpContext: newTcpContext}
	})
}

type factoryVMContext struct {
	types.DefaultVMContext
	newPluginContext func(contextID uint32) types.PluginContext
}

// NewPluginContext calls the registered factory.
func (c *factoryVMContext) NewPluginContext(contextID uint32) types.PluginContext {
	return c.newPluginContext(contextID)
}

type factoryPluginContext struct {
	types.DefaultPluginContext
	newHttpContext func(contextID uint32) types.HttpContext
	newTcpContext  func(contextID uint32) types.TcpContext
}

// NewHttpContext calls the registered HTTP factory, if any.
func (c *factoryPluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	if c.newHttpContext == nil {
		return nil
	}
	return c.newHttpContext(contextID)
}

// NewTcpContext calls the registered TCP factory, if any.
func (c *factoryPluginContext) NewTcpContext(contextID uint32) types.TcpContext {
	if c.newTcpContext == nil {
		return nil
	}
	return c.newTcpContext(contextID)
}
