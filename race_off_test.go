//go:build !race

package wasmproxy

const raceOn = false
