// Command guest is a Go-built (wasip1, c-shared) module for the meter
// tests and benchmarks: a JSON validator like the seed plugin, a tight
// loop, an empty export, an infinite loop and a call through an import.
package main

import (
	"encoding/json"
	"unsafe"
)

//go:wasmimport env add
func hostAdd(a, b int32) int32

var buf [256]byte

// buffer returns the address of a 256-byte buffer the host writes input to.
//
//go:wasmexport buffer
func buffer() int32 { return int32(uintptr(unsafe.Pointer(&buf[0]))) }

// validate decodes buf[:n] as a JSON object and reports 1 if it has a
// string "user" field, 0 if not, -1 if it is not valid JSON.
//
//go:wasmexport validate
func validate(n int32) int32 {
	var m map[string]any
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return -1
	}
	if _, ok := m["user"].(string); !ok {
		return 0
	}
	return 1
}

// loop runs n iterations of a multiply-add the compiler cannot remove.
//
//go:wasmexport loop
func loop(n int32) int32 {
	x := int32(1)
	for i := int32(0); i < n; i++ {
		x = x*31 + i
	}
	return x
}

//go:wasmexport empty
func empty() {}

// spin never returns.
//
//go:wasmexport spin
func spin() {
	for {
	}
}

// addvia calls the host through an import n times.
//
//go:wasmexport addvia
func addvia(a, n int32) int32 {
	for i := int32(0); i < n; i++ {
		a = hostAdd(a, i)
	}
	return a
}

// fib is deliberately exponential: calls, not loops, dominate.
//
//go:wasmexport fib
func fib(n int32) int32 {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func main() {}
