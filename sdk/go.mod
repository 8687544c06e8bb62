module github.com/wasmproxy/wasmproxy/sdk

go 1.24
