package resolve

import (
	"context"
	"slices"

	"github.com/wasmproxy/wasmproxy/config"
)

// clusters resolves the plugins of the clusters' upstream HTTP filters
// (HttpProtocolOptions.http_filters) into out, which gets lists of its
// own: a cluster with such a plugin is replaced by a copy holding a
// resolved copy of the filter.
func (r *resolver) clusters(ctx context.Context, out *config.Bootstrap) error {
	cloned := false
	for ci, c := range out.Clusters {
		var filters []*config.HTTPFilter
		for i, f := range c.UpstreamHTTPFilters {
			if f.Wasm == nil {
				continue
			}
			w, err := r.plugin(ctx, "cluster "+c.Name, f.Wasm)
			if err != nil {
				return err
			}
			if filters == nil {
				filters = slices.Clone(c.UpstreamHTTPFilters)
			}
			nf := *f
			nf.Wasm = w
			filters[i] = &nf
		}
		if filters == nil {
			continue
		}
		if !cloned {
			out.Clusters = slices.Clone(out.Clusters)
			cloned = true
		}
		nc := *c
		nc.UpstreamHTTPFilters = filters
		out.Clusters[ci] = &nc
	}
	return nil
}
