module rootstate

go 1.24

require github.com/wasmproxy/wasmproxy/sdk v0.0.0

replace github.com/wasmproxy/wasmproxy/sdk => ../../sdk
