package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// FilterReleaser is implemented by loaders whose factories hold
// resources (a Wasm plugin's instances). The server calls ReleaseFilter
// once for each factory a swap retired, after the last stream using it
// has ended.
type FilterReleaser interface {
	ReleaseFilter(ctx context.Context, f filter.Factory)
}

// filterGeneration is one set of HTTP filter factories of a connection
// manager. A stream takes the current generation when it starts and
// keeps it to its end; a swap installs a new generation and the old one
// is released once its last stream has ended. refs counts the streams
// using it plus one while it is current.
type filterGeneration struct {
	configs   []*config.HTTPFilter // the non-router filters, in order
	factories []filter.Factory
	refs      atomic.Int64
	released  chan struct{}
	release   func() // runs once, when refs reaches 0
	once      sync.Once
}

func newFilterGeneration(configs []*config.HTTPFilter, factories []filter.Factory, release func()) *filterGeneration {
	g := &filterGeneration{configs: configs, factories: factories, released: make(chan struct{}), release: release}
	g.refs.Store(1)
	return g
}

// unref drops one reference; the last one releases the factories.
func (g *filterGeneration) unref() {
	if g.refs.Add(-1) == 0 {
		g.once.Do(func() {
			if g.release != nil {
				g.release()
			}
			close(g.released)
		})
	}
}

// acquireFilters returns the current generation with a reference taken
// for one stream; the caller must unref it when the stream ends. A
// generation whose count already reached zero has been replaced, so the
// loop reads the pointer again.
func (cm *connManager) acquireFilters() *filterGeneration {
	for {
		g := cm.filters.Load()
		n := g.refs.Load()
		if n > 0 && g.refs.CompareAndSwap(n, n+1) {
			return g
		}
	}
}

// HTTPFilterSet is one HTTP connection manager's filters in use.
type HTTPFilterSet struct {
	Listener string
	Chain    int
	// Filters are the configured HTTP filters, router excluded.
	Filters []*config.HTTPFilter
}

// HTTPFilterSets lists every HTTP connection manager's current filters.
func (s *Server) HTTPFilterSets() []HTTPFilterSet {
	var out []HTTPFilterSet
	for _, cm := range s.httpManagers {
		out = append(out, HTTPFilterSet{Listener: cm.listener.Name, Chain: cm.chainIndex, Filters: cm.filters.Load().configs})
	}
	return out
}

// HTTPFilterSwap asks for new filters on one connection manager.
type HTTPFilterSwap struct {
	Listener string
	Chain    int
	// Filters are the new HTTP filters, router excluded.
	Filters []*config.HTTPFilter
}

// SwapResult tells when the replaced filters are gone.
type SwapResult struct {
	// Released is closed once every replaced generation has been
	// released: its last in-flight stream ended and its factories were
	// handed to the loader's ReleaseFilter.
	Released <-chan struct{}
}

// SwapHTTPFilters builds the factories of every swap through the
// Loader, then installs them: streams that start afterwards use them,
// streams in flight finish on the filters they started with, which are
// released when the last of them ends. All or nothing: if any factory
// fails to load, those already built are released and nothing changes.
// Connections are kept; listeners not named are untouched.
//
// It is the one mechanism for replacing filters in a running server:
// single-plugin swaps use it; full reloads (Reload, reload.go) build
// and install filter generations the same way.
func (s *Server) SwapHTTPFilters(ctx context.Context, swaps []HTTPFilterSwap) (*SwapResult, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	type built struct {
		cm  *connManager
		gen *filterGeneration
	}
	var ready []built
	releaseAll := func(gens []built) {
		for _, b := range gens {
			b.gen.unref()
		}
	}
	for _, sw := range swaps {
		cm := s.manager(sw.Listener, sw.Chain)
		if cm == nil {
			releaseAll(ready)
			return nil, fmt.Errorf("listener %q: no HTTP filter chain %d", sw.Listener, sw.Chain)
		}
		gen, err := s.buildFilters(ctx, cm.listener, sw.Filters)
		if err != nil {
			releaseAll(ready)
			return nil, err
		}
		ready = append(ready, built{cm, gen})
	}
	done := make(chan struct{})
	var olds []*filterGeneration
	for _, b := range ready {
		olds = append(olds, b.cm.filters.Swap(b.gen))
	}
	for _, old := range olds {
		old.unref()
	}
	go func() {
		for _, old := range olds {
			<-old.released
		}
		close(done)
	}()
	return &SwapResult{Released: done}, nil
}

// buildFilters loads the factories of filters (router excluded) into a
// generation whose release hands them back to the loader.
func (s *Server) buildFilters(ctx context.Context, l *config.Listener, filters []*config.HTTPFilter) (*filterGeneration, error) {
	var factories []filter.Factory
	release := func() {
		if r, ok := s.opts.Loader.(FilterReleaser); ok {
			for _, f := range factories {
				r.ReleaseFilter(context.Background(), f)
			}
		}
	}
	var configs []*config.HTTPFilter
	for fi, f := range filters {
		if f.Router {
			continue
		}
		if s.opts.Loader == nil {
			return nil, fmt.Errorf("listener %q: http_filters[%d] %q: no filter loader configured", l.Name, fi, f.Name)
		}
		fac, err := s.opts.Loader.LoadHTTPFilter(ctx, l.Name, f)
		if err != nil {
			release()
			return nil, err
		}
		factories = append(factories, fac)
		configs = append(configs, f)
	}
	return newFilterGeneration(configs, factories, release), nil
}

func (s *Server) manager(listener string, chain int) *connManager {
	for _, cm := range s.httpManagers {
		if cm.listener.Name == listener && cm.chainIndex == chain {
			return cm
		}
	}
	return nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func withoutRouter(fs []*config.HTTPFilter) []*config.HTTPFilter {
	out := make([]*config.HTTPFilter, 0, len(fs))
	for _, f := range fs {
		if !f.Router {
			out = append(out, f)
		}
	}
	return out
}

// sameShape compares two model values as JSON with every value under
// the keys given left out.
func sameShape(a, b any, keys ...string) error {
	ja, err := shapeJSON(a, keys)
	if err != nil {
		return err
	}
	jb, err := shapeJSON(b, keys)
	if err != nil {
		return err
	}
	if !bytes.Equal(ja, jb) {
		return errors.New("its config differs")
	}
	return nil
}

func shapeJSON(v any, keys []string) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	for _, k := range keys {
		dropKey(tree, k)
	}
	return json.Marshal(tree)
}

func dropKey(v any, key string) {
	switch t := v.(type) {
	case map[string]any:
		delete(t, key)
		for _, c := range t {
			dropKey(c, key)
		}
	case []any:
		for _, c := range t {
			dropKey(c, key)
		}
	}
}
