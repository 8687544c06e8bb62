package wasm

import (
	"log/slog"
	"time"
)

// Start-up phases, in the order a plugin load goes through them
// (StartupTimings). The instance phases are those of the pool's first
// instance; PhasePool is the wall time of starting the rest, which a
// fresh pool does after the load has returned (Total leaves it out).
const (
	PhaseRead        = "read"         // reading the code file (0 when resolving read it)
	PhaseHash        = "hash"         // digest of the code (0 when resolving stamped it)
	PhaseInstrument  = "instrument"   // memory cap and fuel-check rewrite (wasm/meter), or its cached result
	PhaseCompile     = "compile"      // wazero compile, or load from the compilation cache
	PhaseInstantiate = "instantiate"  // first instance: module instantiation (start section included)
	PhaseInitialize  = "_initialize"  // first instance: _initialize or _start (and main after it)
	PhaseVMStart     = "on_vm_start"  // first instance: proxy_on_context_create and proxy_on_vm_start
	PhaseConfigure   = "on_configure" // first instance: proxy_validate_configuration and proxy_on_configure
	PhasePool        = "pool"         // the other instances of the pool, started in parallel after the load returns
)

// Phase is one step of a plugin's start-up and how long it took.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	// Detail says how the phase was done when that changes its cost:
	// "cached" (instrument: the rewrite read from the cache directory),
	// "shared" (compile or instance phases: another plugin's work reused),
	// "ahead" (instrument and compile: compiled in the background from the
	// last start's record while the config was parsed, Options.WarmStart;
	// compile is then the time left to wait for it).
	Detail string `json:"detail,omitempty"`
}

// StartupTimings is how long each phase of a plugin's load took, in
// phase order (every Phase* constant once), and the load's wall time
// (to the first instance ready: PhasePool comes after it).
type StartupTimings struct {
	Phases []Phase       `json:"phases"`
	Total  time.Duration `json:"total_ns"`
}

// Phase returns the named phase, and whether it was recorded.
func (t StartupTimings) Phase(name string) (Phase, bool) {
	for _, p := range t.Phases {
		if p.Name == name {
			return p, true
		}
	}
	return Phase{}, false
}

// LogValue shows the phases as "name=duration" attributes.
func (t StartupTimings) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(t.Phases)+1)
	for _, p := range t.Phases {
		v := p.Duration.Round(time.Microsecond).String()
		if p.Detail != "" {
			v += " (" + p.Detail + ")"
		}
		attrs = append(attrs, slog.String(p.Name, v))
	}
	attrs = append(attrs, slog.String("total", t.Total.Round(time.Microsecond).String()))
	return slog.GroupValue(attrs...)
}

// startClock records the phases of one load.
type startClock struct {
	begin time.Time
	last  time.Time
	t     StartupTimings
}

func newStartClock() *startClock {
	now := time.Now()
	return &startClock{begin: now, last: now}
}

// mark ends the phase running since the previous mark.
func (c *startClock) mark(name, detail string) {
	now := time.Now()
	c.add(name, now.Sub(c.last), detail)
	c.last = now
}

// add records a phase measured elsewhere.
func (c *startClock) add(name string, d time.Duration, detail string) {
	c.t.Phases = append(c.t.Phases, Phase{Name: name, Duration: d, Detail: detail})
}

// restart starts the next phase now (time since the last mark is not
// counted in any phase).
func (c *startClock) restart() { c.last = time.Now() }

func (c *startClock) done() StartupTimings {
	c.t.Total = time.Since(c.begin)
	return c.t
}

// instanceTimes are the instance phases of one instance's start.
type instanceTimes struct {
	instantiate, initialize, vmStart, configure time.Duration
}
