module github.com/wasmproxy/wasmproxy/bench/jsoncmp/allocprobe

go 1.26.8

require github.com/wasmproxy/wasmproxy/sdk v0.0.0

replace github.com/wasmproxy/wasmproxy/sdk => ../../../sdk
