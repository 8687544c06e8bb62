// Command foreign is the Go SDK conformance plugin for foreign functions:
// it compresses and uncompresses a text through Envoy's "compress" and
// "uncompress", and calls a function no host has, reporting the status
// (conformance/README.md, area "foreign").
package main

import (
	"bytes"
	"errors"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func add(key, value string) {
	if err := proxywasm.AddHttpRequestHeader(key, value); err != nil {
		panic(err)
	}
}

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	text := []byte("conformance conformance conformance")
	result := "failed"
	if z, err := proxywasm.CallForeignFunction("compress", text); err == nil {
		if back, err := proxywasm.CallForeignFunction("uncompress", z); err == nil && bytes.Equal(back, text) {
			result = "roundtrip"
		}
	}
	add("x-conf-foreign", result)
	_, err := proxywasm.CallForeignFunction("no_such_function", nil)
	switch {
	case errors.Is(err, types.ErrorStatusNotFound):
		add("x-conf-foreign-missing", "1")
	case err == nil:
		add("x-conf-foreign-missing", "0")
	default:
		add("x-conf-foreign-missing", err.Error())
	}
	return types.ActionContinue
}
