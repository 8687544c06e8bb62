package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// maxPropertyPathSegments bounds the path split; no attribute is deeper.
const maxPropertyPathSegments = 8

// proxy_get_property(path_ptr, path_len, out_ptr, out_len) -> status.
//
// The path is NUL-separated segments ("request\x00headers\x00x-foo"; a
// trailing empty segment is ignored). Values use Envoy's encodings
// (reference §2.2): strings raw, ints 8-byte little-endian, timestamps and
// durations as int64 nanoseconds, maps in the header-pair encoding,
// xds.node as serialized envoy.config.core.v3.Node. Absent → NOT_FOUND.
func proxyGetProperty(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_property")
	raw, ok := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	// Copy the path out of guest memory: resolving may not touch the guest,
	// but copyOut below calls its allocator, which can move memory.
	inst.pathBuf = append(inst.pathBuf[:0], raw...)
	var segs [maxPropertyPathSegments][]byte
	path := splitPath(inst.pathBuf, segs[:0])
	if len(path) == 0 {
		setStatus(stack, statusNotFound)
		return
	}
	var value []byte
	st := statusOK
	if v, ok := inst.vm.host.testProperty(path); ok {
		value = v
	} else {
		value, st = inst.property(path)
	}
	inst.vm.host.propertyRead(path, st == statusOK)
	if st != statusOK {
		setStatus(stack, st)
		return
	}
	setStatus(stack, copyOut(ctx, inst, m, value, api.DecodeU32(stack[2]), api.DecodeU32(stack[3])))
}

// splitPath splits on NUL, dropping one trailing empty segment. nil when
// the path has more segments than any attribute.
func splitPath(p []byte, out [][]byte) [][]byte {
	if len(p) > 0 && p[len(p)-1] == 0 {
		p = p[:len(p)-1]
	}
	if len(p) == 0 {
		return nil
	}
	for {
		i := bytes.IndexByte(p, 0)
		if len(out) == cap(out) {
			return nil
		}
		if i < 0 {
			return append(out, p)
		}
		out = append(out, p[:i])
		p = p[i+1:]
	}
}

// property resolves a path into the instance scratch buffer.
func (inst *instance) property(path [][]byte) ([]byte, status) {
	p := inst.plugin
	top, rest := path[0], path[1:]
	switch string(top) {
	case "plugin_name":
		return inst.leafString(rest, p.cfg.Name)
	case "plugin_root_id":
		return inst.leafString(rest, p.cfg.RootID)
	case "plugin_vm_id":
		return inst.leafString(rest, p.cfg.VMID)
	case "xds":
		return inst.xdsProperty(rest)
	case "node":
		return inst.xdsNode(rest)
	}
	// Everything else describes a stream, readable only from one of that
	// stream's own callbacks.
	if c := inst.effectiveConn; c != nil {
		return inst.connProperty(c, top, rest)
	}
	f := inst.effective
	if f == nil || !f.inCallback {
		return nil, statusNotFound
	}
	info := f.cb.Info()
	if info == nil {
		return nil, statusNotFound
	}
	if alias, ok := legacyAliases[string(top)]; ok {
		return inst.streamXDS(info, alias, rest)
	}
	switch string(top) {
	case "filter_state":
		return inst.filterStateProperty(info, rest)
	case "metadata":
		// The stream's dynamic metadata (envoy.config.core.v3.Metadata),
		// as Envoy's `metadata` attribute.
		return inst.metadataValue(info.DynamicMetadata.Snapshot(), rest)
	case "connection_id":
		return inst.leafInt(rest, info.ConnectionID)
	case "request":
		return inst.requestProperty(f, info, rest)
	case "response":
		return inst.responseProperty(f, info, rest)
	case "source", "destination":
		addr := info.DownstreamAddr
		if string(top) == "destination" {
			addr = info.LocalAddr
		}
		if len(rest) != 1 || !addr.IsValid() {
			return nil, statusNotFound
		}
		switch string(rest[0]) {
		case "address":
			return inst.value(addr.String()), statusOK
		case "port":
			return inst.intValue(uint64(addr.Port())), statusOK
		}
	case "connection":
		if v, st := inst.connectionProperty(info, rest); st != statusNotFound {
			return v, st
		}
	case "upstream":
		if v, st := inst.upstreamProperty(info, rest); st != statusNotFound {
			return v, st
		}
	}
	// Last, what the plugin stored with proxy_set_property.
	if len(rest) == 0 {
		if v, ok := info.FilterState.Get("wasm." + string(top)); ok {
			inst.scratch = append(inst.scratch[:0], v...)
			return inst.scratch, statusOK
		}
	}
	return nil, statusNotFound
}

func (inst *instance) xdsProperty(rest [][]byte) ([]byte, status) {
	if len(rest) == 0 {
		return nil, statusNotFound
	}
	if string(rest[0]) == "node" {
		return inst.xdsNode(rest[1:])
	}
	if c := inst.effectiveConn; c != nil {
		if !c.inCallback {
			return nil, statusNotFound
		}
		return inst.streamXDS(c.cb.Info(), string(rest[0]), rest[1:])
	}
	f := inst.effective
	if f == nil || !f.inCallback {
		return nil, statusNotFound
	}
	info := f.cb.Info()
	if info == nil {
		return nil, statusNotFound
	}
	return inst.streamXDS(info, string(rest[0]), rest[1:])
}

func (inst *instance) requestProperty(f *httpFilter, info *filter.StreamInfo, rest [][]byte) ([]byte, status) {
	if len(rest) == 0 {
		return nil, statusNotFound
	}
	headers := f.requestHeaders()
	header := func(name string) ([]byte, status) {
		if len(rest) != 1 || headers == nil {
			return nil, statusNotFound
		}
		v, ok := headers.Get(name)
		if !ok {
			return nil, statusNotFound
		}
		return inst.value(v), statusOK
	}
	switch string(rest[0]) {
	case "path":
		return header(":path")
	case "host":
		return header(":authority")
	case "scheme":
		return header(":scheme")
	case "method":
		return header(":method")
	case "referer":
		return header("referer")
	case "useragent":
		return header("user-agent")
	case "id":
		return header("x-request-id")
	case "url_path", "query":
		if len(rest) != 1 || headers == nil {
			return nil, statusNotFound
		}
		path, ok := headers.Get(":path")
		if !ok {
			return nil, statusNotFound
		}
		q := strings.IndexByte(path, '?')
		if string(rest[0]) == "url_path" {
			if q >= 0 {
				path = path[:q]
			}
			return inst.value(path), statusOK
		}
		if q < 0 {
			return inst.value(""), statusOK
		}
		query := path[q+1:]
		if h := strings.IndexByte(query, '#'); h >= 0 {
			query = query[:h]
		}
		return inst.value(query), statusOK
	case "headers":
		return inst.mapProperty(headers, rest[1:])
	case "time":
		if info.StartTime.IsZero() {
			return nil, statusNotFound
		}
		return inst.leafInt(rest[1:], uint64(info.StartTime.UnixNano()))
	case "protocol":
		if info.Protocol == "" {
			return nil, statusNotFound
		}
		return inst.leafString(rest[1:], info.Protocol)
	case "duration":
		if info.EndTime.IsZero() || info.StartTime.IsZero() {
			return nil, statusNotFound
		}
		return inst.leafInt(rest[1:], uint64(info.EndTime.Sub(info.StartTime).Nanoseconds()))
	case "size":
		// Envoy: content-length when present, else bytes received.
		if headers != nil {
			if cl, ok := headers.Get("content-length"); ok {
				if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
					return inst.leafInt(rest[1:], uint64(n))
				}
			}
		}
		return inst.leafInt(rest[1:], info.RequestBodyBytes.Load())
	case "total_size":
		return inst.leafInt(rest[1:], info.RequestHeaderBytes+info.RequestBodyBytes.Load())
	}
	return nil, statusNotFound
}

func (inst *instance) responseProperty(f *httpFilter, info *filter.StreamInfo, rest [][]byte) ([]byte, status) {
	if len(rest) == 0 {
		return nil, statusNotFound
	}
	switch string(rest[0]) {
	case "code":
		if info.ResponseCode == 0 {
			return nil, statusNotFound
		}
		return inst.leafInt(rest[1:], uint64(info.ResponseCode))
	case "code_details":
		if info.ResponseCodeDetails == "" {
			return nil, statusNotFound
		}
		return inst.leafString(rest[1:], info.ResponseCodeDetails)
	case "headers":
		return inst.mapProperty(f.responseHeaders(), rest[1:])
	case "trailers":
		return inst.mapProperty(f.cb.ResponseTrailers(), rest[1:])
	case "size":
		return inst.leafInt(rest[1:], info.ResponseBodyBytes.Load())
	case "total_size":
		return inst.leafInt(rest[1:], info.ResponseHeaderBytes+info.ResponseBodyBytes.Load())
	}
	return nil, statusNotFound
}

// mapProperty reads a header map as CEL sees it: the whole map in pair
// encoding with one entry per name, or one name's values comma-joined
// (unlike proxy_get_header_map_value, which returns the first value).
func (inst *instance) mapProperty(hm *filter.HeaderMap, rest [][]byte) ([]byte, status) {
	if hm == nil || len(rest) > 1 {
		return nil, statusNotFound
	}
	if len(rest) == 1 {
		key := strings.ToLower(string(rest[0]))
		values := hm.Values(key)
		if len(values) == 0 {
			return nil, statusNotFound
		}
		return inst.value(strings.Join(values, ",")), statusOK
	}
	pairs := hm.Pairs()
	joined := make([]filter.Pair, 0, len(pairs))
	for i, p := range pairs {
		seen := false
		for _, q := range pairs[:i] {
			if q.Key == p.Key {
				seen = true
				break
			}
		}
		if !seen {
			joined = append(joined, filter.Pair{Key: p.Key, Value: strings.Join(hm.Values(p.Key), ",")})
		}
	}
	inst.scratch = appendPairs(inst.scratch[:0], joined)
	return inst.scratch, statusOK
}

func (inst *instance) value(s string) []byte {
	inst.scratch = append(inst.scratch[:0], s...)
	return inst.scratch
}

func (inst *instance) intValue(v uint64) []byte {
	inst.scratch = binary.LittleEndian.AppendUint64(inst.scratch[:0], v)
	return inst.scratch
}

func (inst *instance) leafString(rest [][]byte, s string) ([]byte, status) {
	if len(rest) != 0 {
		return nil, statusNotFound
	}
	return inst.value(s), statusOK
}

func (inst *instance) leafInt(rest [][]byte, v uint64) ([]byte, status) {
	if len(rest) != 0 {
		return nil, statusNotFound
	}
	return inst.intValue(v), statusOK
}

func propertyFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_get_property", ints(4), oneI32, proxyGetProperty},
	}
}
