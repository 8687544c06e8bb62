// Package main reads route, virtual host, cluster and listener metadata
// (metadata.filter_metadata in the config) through the xds.* properties
// and the pre-1.33 top-level aliases, and returns what it read in
// response headers.
package main

import (
	"encoding/binary"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

// reads maps response header → property path; kind says how to decode.
var reads = []struct {
	header, kind string
	path         []string
}{
	{"x-route-name", "string", []string{"xds", "route_name"}},
	{"x-cluster-name", "string", []string{"xds", "cluster_name"}},
	{"x-route-team", "string", []string{"xds", "route_metadata", "filter_metadata", "acme", "team"}},
	{"x-route-team-legacy", "string", []string{"route_metadata", "filter_metadata", "acme", "team"}},
	{"x-route-tier", "number", []string{"xds", "route_metadata", "filter_metadata", "acme", "tier"}},
	{"x-route-beta", "bool", []string{"xds", "route_metadata", "filter_metadata", "acme", "beta"}},
	{"x-route-rps", "number", []string{"xds", "route_metadata", "filter_metadata", "acme", "limits", "rps"}},
	{"x-route-acme-keys", "keys", []string{"xds", "route_metadata", "filter_metadata", "acme"}},
	{"x-cluster-region", "string", []string{"xds", "cluster_metadata", "filter_metadata", "acme", "region"}},
	{"x-cluster-region-legacy", "string", []string{"cluster_metadata", "filter_metadata", "acme", "region"}},
	{"x-vhost-zone", "string", []string{"xds", "virtual_host_metadata", "filter_metadata", "acme", "zone"}},
	{"x-listener-side", "string", []string{"xds", "listener_metadata", "filter_metadata", "acme", "side"}},
	{"x-listener-side-legacy", "string", []string{"listener_metadata", "filter_metadata", "acme", "side"}},
}

type stream struct {
	types.DefaultHttpContext
	seen [][2]string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	for _, r := range reads {
		b, err := proxywasm.GetProperty(r.path)
		var v string
		switch {
		case err != nil:
			v = "error: " + err.Error()
		case r.kind == "number" && len(b) == 8:
			v = strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(b)), 'g', -1, 64)
		case r.kind == "bool" && len(b) == 1:
			v = strconv.FormatBool(b[0] == 1)
		case r.kind == "keys":
			pairs, _ := proxywasm.GetPropertyMap(r.path)
			var keys []string
			for _, kv := range pairs {
				keys = append(keys, kv[0])
			}
			sort.Strings(keys)
			v = strings.Join(keys, ",")
		default:
			v = string(b)
		}
		s.seen = append(s.seen, [2]string{r.header, v})
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	for _, kv := range s.seen {
		_ = proxywasm.ReplaceHttpResponseHeader(kv[0], kv[1])
	}
	return types.ActionContinue
}
