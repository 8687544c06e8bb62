package loader

import (
	"context"
	"errors"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// hostUpstreams is the native filters' filter.Upstreams: the clusters the
// Wasm host was given (wasm.Host.SetUpstreams), looked up per call. The
// proxy is built after its filters and binds its clusters to the host
// once it exists, so native filters and Wasm callouts share that one
// binding and reach clusters the same way.
type hostUpstreams struct{ h *wasm.Host }

var errNoUpstreams = errors.New("the proxy's clusters are not bound yet")

func (u hostUpstreams) get() filter.Upstreams {
	if u.h == nil {
		return nil
	}
	return u.h.Upstreams()
}

func (u hostUpstreams) HasCluster(name string) bool {
	ups := u.get()
	return ups != nil && ups.HasCluster(name)
}

func (u hostUpstreams) HTTPCall(ctx context.Context, cluster string, headers []filter.Pair, body []byte, trailers []filter.Pair) (*filter.CalloutResponse, error) {
	ups := u.get()
	if ups == nil {
		return nil, errNoUpstreams
	}
	return ups.HTTPCall(ctx, cluster, headers, body, trailers)
}

func (u hostUpstreams) OpenStream(ctx context.Context, cluster string, headers []filter.Pair) (filter.UpstreamStream, error) {
	ups := u.get()
	if ups == nil {
		return nil, errNoUpstreams
	}
	return ups.OpenStream(ctx, cluster, headers)
}

// hostServer is the native filters' filters.ServerState: the proxy bound
// to the host as its upstreams (the server, which outlives reloads)
// tells whether it drains.
type hostServer struct{ h *wasm.Host }

func (s hostServer) HealthCheckFailed() bool {
	if s.h == nil {
		return false
	}
	d, ok := s.h.Upstreams().(interface{ Draining() bool })
	return ok && d.Draining()
}
