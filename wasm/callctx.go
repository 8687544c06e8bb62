package wasm

import (
	"context"
	"time"

	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

// callContext is the context of every guest call an instance makes
// (instance.ctx). wazero asks the context of each call for a key of its
// own (whether snapshots are enabled, a miss) and every host function
// asks it for the instance (instanceOf); the meter asks it for the
// instance's Deadline at each fuel check. A chain of context.WithValue
// answered those by walking to Background, comparing keys as interfaces
// on the way (about 1 µs per request in a profile of the json-validation
// plugin). This type answers its two keys with a type switch and
// everything else with nil at once. Its parent is, in effect,
// Background: no deadline, never done, no other values. Contexts derived
// from it (wazero's instantiation context, with the memory allocator)
// reach these keys through the ordinary chain.
type callContext struct {
	inst *instance
}

var _ context.Context = (*callContext)(nil)

func (*callContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*callContext) Done() <-chan struct{}       { return nil }
func (*callContext) Err() error                  { return nil }

// Value answers instanceKey with the instance and meter.DeadlineKey with
// the instance's Deadline (meter.DeadlineKey's contract: the same one
// armed and cleared around every guest call made with this context).
func (c *callContext) Value(key any) any {
	switch key.(type) {
	case instanceKey:
		return c.inst
	case meter.DeadlineKey:
		return &c.inst.deadline
	}
	return nil
}

func (c *callContext) String() string { return "wasm.callContext" }
