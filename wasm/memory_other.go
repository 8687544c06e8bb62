//go:build !linux

package wasm

import "context"

// guestMemory leaves linear memory to wazero's default allocator (a Go
// slice regrown by copying) where the reservation of memory_linux.go is
// not implemented.
type guestMemory struct{}

func newGuestMemory(uint32) *guestMemory { return nil }

func (*guestMemory) context(ctx context.Context) context.Context { return ctx }

func (*guestMemory) release() {}
