//go:build race

package wasmproxy

const raceOn = true
