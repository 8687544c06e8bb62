// Package statsd sends a stats store to statsd and DogStatsD servers over
// UDP, as Envoy's envoy.stat_sinks.statsd and envoy.stat_sinks.dog_statsd
// sinks do:
//
//   - every flush interval, each counter that was ever incremented as
//     "<prefix>.<name>:<delta since the last flush>|c" and each gauge in
//     use as "<prefix>.<name>:<value>|g";
//   - each histogram sample as it is recorded, "<prefix>.<name>:<value>|ms",
//     sent with the next flush or as soon as a datagram is full.
//
// DogStatsD names a stat by its tag-extracted name and appends the tags
// ("|#envoy.cluster_name:backend"); plain statsd uses the full name. A
// plugin's metric is named "wasmcustom.<name>", as in Envoy. Lines are
// joined by newlines into datagrams of at most MaxBytesPerDatagram bytes.
//
// Sending never blocks the data path: samples are appended to a buffer
// under a mutex, and datagrams are written by the flusher's goroutine; a
// datagram that cannot be written (no server listening: UDP reports the
// refusal on a later write) is dropped and counted.
package statsd

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/stats"
)

// Config is one sink.
type Config struct {
	// Address is the server's "ip:port" (UDP).
	Address string
	// Prefix starts every name ("envoy" when empty).
	Prefix string
	// DogStatsD: tag-extracted names with "|#tag:value" suffixes.
	DogStatsD bool
	// MaxBytesPerDatagram bounds a datagram (DefaultMaxBytes when 0).
	MaxBytesPerDatagram int
}

// DefaultMaxBytes keeps a datagram within a 1500-byte Ethernet MTU.
const DefaultMaxBytes = 1432

// customNamespace is where Envoy puts plugin-defined metrics.
const customNamespace = "wasmcustom."

// Flusher sends one store to its sinks until its context ends.
type Flusher struct {
	store    *stats.Store
	interval time.Duration
	sinks    []*sink
	// last holds each counter's value at the previous flush.
	last map[string]uint64
	// full carries datagrams that samples filled between flushes.
	full chan datagram
	// Stats about the sinks themselves.
	sent, dropped *stats.Counter
}

type datagram struct {
	s *sink
	d []byte
}

type sink struct {
	cfg  Config
	conn net.Conn
	// mu guards pending: histogram samples since the last write.
	mu      sync.Mutex
	pending []byte
	// names caches each stat's line parts (name → *lineParts): a
	// histogram sample is on the request path, and tag extraction runs
	// regular expressions.
	names sync.Map
}

// lineParts are a stat's line around its value: "<prefix>.<name>:" and
// DogStatsD's "|#tag:value,..." (empty for plain statsd).
type lineParts struct{ head, tags string }

// New dials the sinks (UDP: nothing is sent yet) and prepares a Flusher;
// Run starts it.
func New(store *stats.Store, interval time.Duration, cfgs []Config) (*Flusher, error) {
	f := &Flusher{
		store:    store,
		interval: interval,
		last:     map[string]uint64{},
		full:     make(chan datagram, 64),
		sent:     store.Counter("stats.statsd.datagrams_sent"),
		dropped:  store.Counter("stats.statsd.datagrams_dropped"),
	}
	for _, c := range cfgs {
		if c.Prefix == "" {
			c.Prefix = "envoy"
		}
		if c.MaxBytesPerDatagram <= 0 {
			c.MaxBytesPerDatagram = DefaultMaxBytes
		}
		conn, err := net.Dial("udp", c.Address)
		if err != nil {
			f.close()
			return nil, err
		}
		f.sinks = append(f.sinks, &sink{cfg: c, conn: conn})
	}
	return f, nil
}

// Run flushes every interval until ctx ends, then flushes once more and
// closes the sockets.
func (f *Flusher) Run(ctx context.Context) {
	f.store.OnSample(f.sample)
	defer f.close()
	defer f.store.OnSample(nil)
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.Flush()
			return
		case <-t.C:
			f.Flush()
		case dg := <-f.full:
			f.write(dg.s, dg.d)
		}
	}
}

// writeFull writes the datagrams samples filled.
func (f *Flusher) writeFull() {
	for {
		select {
		case dg := <-f.full:
			f.write(dg.s, dg.d)
		default:
			return
		}
	}
}

// sample records one histogram sample in every sink (stats.Store.OnSample).
func (f *Flusher) sample(h *stats.Histogram, v float64) {
	for _, s := range f.sinks {
		line := s.line(f.store, h.Name(), strconv.FormatFloat(v, 'f', -1, 64), "ms")
		s.mu.Lock()
		var out []byte
		if len(s.pending) > 0 && len(s.pending)+1+len(line) > s.cfg.MaxBytesPerDatagram {
			out, s.pending = s.pending, nil
		}
		s.pending = appendLine(s.pending, line)
		s.mu.Unlock()
		if out != nil {
			select {
			case f.full <- datagram{s, out}:
			default:
				f.dropped.Inc() // the flusher is behind: never block the caller
			}
		}
	}
}

// Flush sends the counters, gauges and pending samples now. Run calls
// it; call it directly only when Run is not running.
func (f *Flusher) Flush() {
	f.writeFull()
	snap := f.store.Snapshot()
	for _, s := range f.sinks {
		var d []byte
		emit := func(line []byte) {
			if len(d) > 0 && len(d)+1+len(line) > s.cfg.MaxBytesPerDatagram {
				f.write(s, d)
				d = nil
			}
			d = appendLine(d, line)
		}
		for _, c := range snap.Counters {
			if c.Value == 0 {
				continue // never used
			}
			delta := uint64(c.Value) - f.last[c.Name]
			emit(s.line(f.store, c.Name, strconv.FormatUint(delta, 10), "c"))
		}
		for _, g := range snap.Gauges {
			if g.Value == 0 {
				continue
			}
			emit(s.line(f.store, g.Name, strconv.FormatInt(g.Value, 10), "g"))
		}
		s.mu.Lock()
		pending := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(pending) > 0 {
			if len(d) > 0 && len(d)+1+len(pending) > s.cfg.MaxBytesPerDatagram {
				f.write(s, d)
				d = nil
			}
			d = appendLine(d, pending)
		}
		if len(d) > 0 {
			f.write(s, d)
		}
	}
	for _, c := range snap.Counters {
		f.last[c.Name] = uint64(c.Value)
	}
}

// line formats one stat for s: "<prefix>.<name>:<value>|<type>", with
// DogStatsD's tags.
func (s *sink) line(store *stats.Store, name, value, typ string) []byte {
	p := s.parts(store, name)
	b := make([]byte, 0, len(p.head)+len(value)+1+len(typ)+len(p.tags))
	b = append(b, p.head...)
	b = append(b, value...)
	b = append(b, '|')
	b = append(b, typ...)
	return append(b, p.tags...)
}

// parts returns the cached line parts of a stat, computing them once.
func (s *sink) parts(store *stats.Store, name string) *lineParts {
	if p, ok := s.names.Load(name); ok {
		return p.(*lineParts)
	}
	full := name
	if store.Kind(name) == stats.Custom {
		full = customNamespace + name
	}
	var tags []stats.Tag
	if s.cfg.DogStatsD {
		full, tags = store.Tagged(full)
	}
	p := &lineParts{head: s.cfg.Prefix + "." + full + ":"}
	for i, t := range tags {
		if i == 0 {
			p.tags += "|#"
		} else {
			p.tags += ","
		}
		p.tags += t.Name + ":" + t.Value
	}
	s.names.Store(name, p)
	return p
}

func appendLine(d, line []byte) []byte {
	if len(d) > 0 {
		d = append(d, '\n')
	}
	return append(d, line...)
}

func (f *Flusher) write(s *sink, d []byte) {
	if _, err := s.conn.Write(d); err != nil {
		f.dropped.Inc()
		return
	}
	f.sent.Inc()
}

func (f *Flusher) close() {
	for _, s := range f.sinks {
		_ = s.conn.Close()
	}
}
