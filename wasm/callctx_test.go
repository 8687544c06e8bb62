package wasm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

type unrelatedKey struct{}

// TestCallContextAnswersItsKeys: an instance's call context answers the
// instance key with the instance and the meter's key with the instance's
// deadline, anything else (wazero's own keys among them) with nil; it has
// no deadline and is never done. instanceOf finds the instance in it and
// in contexts derived from it, and nothing elsewhere.
func TestCallContextAnswersItsKeys(t *testing.T) {
	h := newTestHost(t, 1)
	p := h.load(t, goPlugin(t, "headers"))
	inst, _ := p.pick()
	if inst == nil {
		t.Fatal("no instance")
	}
	ctx := inst.ctx
	for _, tc := range []struct {
		name string
		key  any
		want any
	}{
		{"instance", instanceKey{}, inst},
		{"meter deadline", meter.DeadlineKey{}, &inst.deadline},
		{"unrelated key", unrelatedKey{}, nil},
		{"string key", "instance", nil},
		{"nil key", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ctx.Value(tc.key); got != tc.want {
				t.Errorf("Value(%T) = %v, want %v", tc.key, got, tc.want)
			}
		})
	}
	if d, ok := ctx.Deadline(); ok || !d.IsZero() {
		t.Errorf("Deadline() = %v, %v; want none", d, ok)
	}
	if ctx.Done() != nil || ctx.Err() != nil {
		t.Errorf("Done() = %v, Err() = %v; want nil, nil", ctx.Done(), ctx.Err())
	}
	// A context derived from the call context and cancelled does not
	// touch it (nothing to propagate from a parent that is never done).
	derived, cancel := context.WithCancel(ctx)
	cancel()
	if derived.Err() == nil || ctx.Err() != nil {
		t.Errorf("cancelling a derived context: derived.Err() = %v, ctx.Err() = %v", derived.Err(), ctx.Err())
	}

	for _, tc := range []struct {
		name string
		ctx  context.Context
		want *instance
	}{
		{"call context", ctx, inst},
		{"derived with a value", context.WithValue(ctx, unrelatedKey{}, 1), inst},
		{"instantiation's (memory allocator)", experimental.WithMemoryAllocator(ctx, nil), inst},
		{"with wazero's snapshotter enabled", experimental.WithSnapshotter(ctx), inst},
		{"derived and cancelled", derived, inst},
		{"background", context.Background(), nil},
		{"another value context", context.WithValue(context.Background(), unrelatedKey{}, inst), nil},
	} {
		t.Run("instanceOf/"+tc.name, func(t *testing.T) {
			if got := instanceOf(tc.ctx); got != tc.want {
				t.Errorf("instanceOf = %p, want %p", got, tc.want)
			}
			d, _ := tc.ctx.Value(meter.DeadlineKey{}).(*meter.Deadline)
			if want := (*meter.Deadline)(nil); tc.want != nil {
				want = &tc.want.deadline
				if d != want {
					t.Errorf("Value(meter.DeadlineKey{}) = %p, want %p", d, want)
				}
			} else if d != nil {
				t.Errorf("Value(meter.DeadlineKey{}) = %p, want nil", d)
			}
		})
	}

	// What every guest call and every host function asks costs no
	// allocation.
	if n := testing.AllocsPerRun(100, func() {
		if instanceOf(ctx) != inst || ctx.Value(meter.DeadlineKey{}) == nil || ctx.Value(unrelatedKey{}) != nil {
			t.Fatal("wrong answer")
		}
	}); n != 0 {
		t.Errorf("lookups allocate %v objects, want 0", n)
	}
}

// TestCallContextCarriesTheDeadline: through the call context, host
// functions find their instance (the guest reads a request header) and
// the meter finds the call's deadline: a guest that then spins is
// stopped, counted as deadline_exceeded, and its stream answered by the
// failure policy.
func TestCallContextCarriesTheDeadline(t *testing.T) {
	h := newTestHost(t, 1)
	cfg := goPlugin(t, "headers")
	cfg.EnvKeyValues = map[string]string{EnvCallDeadline: "50"}
	p := h.load(t, cfg)

	// A stream that does not spin: the host calls work.
	s := newStream(p)
	if st := s.decodeHeaders(true, ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
		t.Fatalf("request headers: %v, want Continue", st)
	}
	if got, _ := s.cb.reqHeaders.Get("x-seen"); got != "v" {
		t.Errorf("x-seen = %q, want %q (the guest's header calls found the instance)", got, "v")
	}
	s.finish()

	done := make(chan filter.HeadersStatus, 1)
	spin := newStream(p)
	go func() { done <- spin.decodeHeaders(true, ":path", "/", "x-spin", "1") }()
	select {
	case st := <-done:
		if st != filter.HeadersStopAllIterationAndWatermark {
			t.Errorf("spinning request headers: %v, want StopAllIterationAndWatermark", st)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the spinning guest was not stopped")
	}
	if len(spin.cb.replies) != 1 || spin.cb.replies[0].status != 503 {
		t.Errorf("replies = %+v, want one 503", spin.cb.replies)
	}
	if c := h.stats.Counter("wasm.httpfilter.deadline_exceeded").Value(); c != 1 {
		t.Errorf("deadline_exceeded = %d, want 1", c)
	}
	if !strings.Contains(h.logs.text(), "proxy_on_request_headers failed") {
		t.Errorf("no failure logged:\n%s", h.logs.text())
	}
	spin.finish()
}
