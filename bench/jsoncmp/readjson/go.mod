module github.com/wasmproxy/wasmproxy/bench/jsoncmp/readjson

go 1.26.8

require (
	github.com/tidwall/gjson v1.20.0
	github.com/wasmproxy/wasmproxy/sdk v0.0.0
)

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
)

replace github.com/wasmproxy/wasmproxy/sdk => ../../../sdk
