package wasm

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/wasm/meter"
)

// Per-plugin limits are set through vm_config.environment_variables
// key_values, so a config that sets them stays valid for Envoy (which
// passes them to the guest as environment variables and otherwise
// ignores them). docs/decisions.md §11 says why.
const (
	// EnvCallDeadline is the budget of one guest callback in
	// milliseconds of CPU time (wasm/meter.Deadline: time spent waiting
	// for a core or in a blocking host call is not counted; wall-clock
	// time off Linux); 0 turns deadlines off and leaves the module
	// uninstrumented.
	EnvCallDeadline = "WASMPROXY_CALL_DEADLINE_MS"
	// EnvStartDeadline is the budget of each start-up call (_initialize,
	// main, on_vm_start, validate, on_configure) in milliseconds of CPU
	// time, counted like EnvCallDeadline.
	EnvStartDeadline = "WASMPROXY_START_DEADLINE_MS"
	// EnvMemoryLimit caps each instance's linear memory, in MiB.
	EnvMemoryLimit = "WASMPROXY_MEMORY_LIMIT_MB"
)

// Defaults for the limits above.
const (
	DefaultCallDeadline  = 100 * time.Millisecond
	DefaultStartDeadline = 10 * time.Second
	DefaultMemoryLimitMB = 256
)

// limits are what a VM runs under, from the first plugin that creates it
// (like the WASI environment: Envoy's VM key ignores environment
// variables too).
type limits struct {
	call, start time.Duration // 0 = no deadline
	memPages    uint32        // 64 KiB pages
}

// String is how logs show limits: "call deadline 100ms, start deadline
// 10s, memory 256 MiB" (a zero deadline shows as "off").
func (l limits) String() string {
	d := func(v time.Duration) string {
		if v == 0 {
			return "off"
		}
		return v.String()
	}
	return fmt.Sprintf("call deadline %s, start deadline %s, memory %d MiB", d(l.call), d(l.start), l.memPages/16)
}

// metered reports whether modules under these limits are instrumented.
func (l limits) metered() bool { return l.call > 0 || l.start > 0 }

// pluginLimits reads the limits from the plugin's environment variables.
func pluginLimits(cfg *config.WasmPlugin) (limits, error) {
	l := limits{call: DefaultCallDeadline, start: DefaultStartDeadline, memPages: DefaultMemoryLimitMB * 16}
	num := func(key string, max uint64) (uint64, bool, error) {
		s, ok := cfg.EnvKeyValues[key]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil || n > max {
			return 0, false, fmt.Errorf("vm_config.environment_variables.key_values.%s: %q is not a number from 0 to %d", key, s, max)
		}
		return n, true, nil
	}
	if n, ok, err := num(EnvCallDeadline, 3_600_000); err != nil {
		return l, err
	} else if ok {
		l.call = time.Duration(n) * time.Millisecond
		if n == 0 {
			l.start = 0 // "off" means off: no instrumentation at all
		}
	}
	if n, ok, err := num(EnvStartDeadline, 3_600_000); err != nil {
		return l, err
	} else if ok {
		l.start = time.Duration(n) * time.Millisecond
	}
	if n, ok, err := num(EnvMemoryLimit, maxMemoryPages/16); err != nil {
		return l, err
	} else if ok {
		if n == 0 {
			return l, fmt.Errorf("vm_config.environment_variables.key_values.%s: must be at least 1", EnvMemoryLimit)
		}
		l.memPages = uint32(n) * 16
	}
	return l, nil
}

// prepare turns a module as configured into the one the host compiles:
// its memory's maximum lowered to the limit (so memory.grow fails past
// it, in this instance only), then fuel checks added when deadlines are
// on, with the map from its code offsets back to the original. A module
// that starts above the limit is refused here.
func prepare(code []byte, l limits) ([]byte, *meter.CodeMap, error) {
	out, err := capMemory(code, l.memPages)
	if err != nil {
		return nil, nil, err
	}
	// Tens of thousands of data segments (a Go build's) become a few:
	// the same initial memory, without wazero's per-segment entry in every
	// instance and copy at every instantiation.
	out = meter.CoalesceData(out)
	// The rewrite also validates the module strictly: it refuses tiny
	// hostile modules that make wazero v1.12's compiler exhaust memory or
	// panic (wasm/meter TestHostileTinyModules), so it runs even when
	// deadlines are off; only its output is then discarded.
	metered, codeMap, err := meter.InstrumentMapped(out, meter.Options{})
	if err != nil {
		if errors.Is(err, meter.ErrAlreadyInstrumented) {
			return nil, nil, fmt.Errorf("module imports from %q, a name reserved for the host", meter.HostModule)
		}
		return nil, nil, err
	}
	if !l.metered() {
		return out, nil, nil
	}
	return metered, codeMap, nil
}

// capMemory rewrites the memory section so that every memory's maximum
// is at most maxPages. Everything else is copied byte for byte. Malformed
// input is returned unchanged: compiling it gives the better message.
func capMemory(code []byte, maxPages uint32) ([]byte, error) {
	if len(code) < 8 {
		return code, nil
	}
	pos := 8
	for pos < len(code) {
		id := code[pos]
		size, n := memUleb(code[pos+1:])
		start := pos + 1 + n
		if n == 0 || uint64(start)+size > uint64(len(code)) {
			return code, nil
		}
		end := start + int(size)
		if id != 5 {
			pos = end
			continue
		}
		sec := code[start:end]
		count, n := memUleb(sec)
		if n == 0 {
			return code, nil
		}
		body := appendMemUleb(nil, count)
		r := n
		for i := uint64(0); i < count; i++ {
			if r >= len(sec) {
				return code, nil
			}
			flags := sec[r]
			r++
			if flags > 3 {
				return code, nil // memory64 and friends: wazero rejects them
			}
			min, n := memUleb(sec[r:])
			if n == 0 {
				return code, nil
			}
			r += n
			max := uint64(maxPages)
			if flags&1 != 0 {
				m, n := memUleb(sec[r:])
				if n == 0 {
					return code, nil
				}
				r += n
				max = minU64(m, max)
			}
			if min > uint64(maxPages) {
				return nil, fmt.Errorf("module declares %d MiB of initial memory, over the memory limit of %d MiB (%s)",
					min/16, maxPages/16, EnvMemoryLimit)
			}
			body = append(body, flags|1)
			body = appendMemUleb(appendMemUleb(body, min), max)
		}
		if r != len(sec) {
			return code, nil
		}
		out := make([]byte, 0, len(code)+8)
		out = append(out, code[:pos]...)
		out = append(out, 5)
		out = appendMemUleb(out, uint64(len(body)))
		out = append(out, body...)
		return append(out, code[end:]...), nil
	}
	return code, nil
}

func minU64(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// memUleb decodes an unsigned LEB128 of at most 5 bytes (u32); n is 0 when
// it is malformed.
func memUleb(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 5; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

func appendMemUleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// trapKind classifies a failed guest call for stats and logs.
type trapKind uint8

const (
	trapRuntime  trapKind = iota // panic, unreachable, out of bounds, ...
	trapDeadline                 // ran past its deadline
	trapMemory                   // the memory limit was hit
)

func (k trapKind) String() string {
	switch k {
	case trapDeadline:
		return "deadline exceeded"
	case trapMemory:
		return "memory limit exceeded"
	}
	return "trap"
}

// classify tells why a guest call failed. A deadline is recognized by
// the meter's error. Running out of memory has no error of its own: a Go
// guest prints "out of memory" and exits, a Rust or C one aborts. So it
// is a memory-limit hit when the guest said so on stderr or when its
// memory is within one growth step (1/16) of the limit.
func (inst *instance) classify(err error) trapKind {
	if errors.Is(err, meter.ErrDeadlineExceeded) {
		return trapDeadline
	}
	if inst.sawOOM {
		return trapMemory
	}
	if inst.mod != nil && inst.vm != nil {
		if mem := inst.mod.Memory(); mem != nil && inst.vm.limits.memPages > 0 {
			limit := uint64(inst.vm.limits.memPages) * 65536
			if uint64(mem.Size()) >= limit-limit/16 {
				return trapMemory
			}
		}
	}
	return trapRuntime
}

// noteStderr watches what the guest writes to stderr for an allocator's
// out-of-memory report (Go: "fatal error: runtime: out of memory"; Rust:
// "memory allocation of N bytes failed").
func (inst *instance) noteStderr(line []byte) {
	s := string(line)
	if strings.Contains(s, "out of memory") || strings.Contains(s, "memory allocation of") {
		inst.sawOOM = true
	}
}

var (
	startFuncRE = regexp.MustCompile(`start function\[(\d+)\]`)
	// A frame of a function without a name: "\tmodule.$12(i32) i32".
	unnamedFrameRE = regexp.MustCompile(`(?m)^(\s*[^\s(]*\.)\$(\d+)\(`)
	// A source location under a frame: "\t\t0x1f4: file.c:10:3".
	codeOffsetRE = regexp.MustCompile(`(?m)^(\s+)0x([0-9a-f]+):`)
	// The meter's check, where a deadline is noticed: not the guest's.
	meterFrameRE = regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(meter.HostModule+"."+meter.CheckFunction) + `\(\) i32\n`)
)

// original rewrites a wazero error text about a metered module so it
// speaks of the module as built: function indices ("start function[N]",
// frames of unnamed functions "$N") lose the shift of the check import
// the rewrite added after the module's own imports, code offsets shown
// with source lines map back through the rewrite, and the meter's own
// frame (where a deadline was noticed) is left out. An error about a
// module that was not rewritten is returned as it is.
func (cm *compiledModule) original(err error) error {
	if cm == nil || cm.mod == nil || err == nil || cm.codeMap() == nil {
		return err
	}
	imported := uint64(len(cm.mod.ImportedFunctions()) - 1) // the check import's index
	index := func(s string) uint64 {
		n, _ := strconv.ParseUint(s, 10, 32)
		if n > imported {
			n--
		}
		return n
	}
	msg := err.Error()
	out := meterFrameRE.ReplaceAllString(msg, "")
	out = startFuncRE.ReplaceAllStringFunc(out, func(m string) string {
		return fmt.Sprintf("start function[%d]", index(startFuncRE.FindStringSubmatch(m)[1]))
	})
	out = unnamedFrameRE.ReplaceAllStringFunc(out, func(m string) string {
		g := unnamedFrameRE.FindStringSubmatch(m)
		return fmt.Sprintf("%s$%d(", g[1], index(g[2]))
	})
	out = codeOffsetRE.ReplaceAllStringFunc(out, func(m string) string {
		g := codeOffsetRE.FindStringSubmatch(m)
		n, _ := strconv.ParseUint(g[2], 16, 32)
		return fmt.Sprintf("%s%#x:", g[1], cm.codeMap().Original(uint32(n)))
	})
	if out == msg {
		return err
	}
	return &originalError{msg: out, err: err}
}

// originalError is a rewritten error text that still unwraps to the
// error it was made from (meter.ErrDeadlineExceeded, exit codes).
type originalError struct {
	msg string
	err error
}

func (e *originalError) Error() string { return e.msg }
func (e *originalError) Unwrap() error { return e.err }
