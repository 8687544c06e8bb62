//go:build !linux

package wasm

// shareInitialPages shares an instance's memory pages with the other
// instances of its module on Linux (cowmem_linux.go); elsewhere linear
// memory is wazero's own and stays private.
func shareInitialPages(*instance) {}
