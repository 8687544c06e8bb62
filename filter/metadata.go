package filter

import "sync"

// DynamicMetadata is a stream's dynamic metadata (Envoy's
// StreamInfo::dynamicMetadata): namespace → fields, written by filters
// while the stream runs (header_to_metadata, ratelimit, ...) and read by
// later filters, Wasm plugins (the `metadata` property) and access logs
// (%DYNAMIC_METADATA(...)%). It is the one owner of that state.
//
// Values are JSON values as the config's metadata holds them (string,
// float64, bool, nil, []any, map[string]any). A stored value is never
// changed in place: writers store new values, so readers may keep what
// they read. Safe for concurrent use; the zero value is empty and usable.
type DynamicMetadata struct {
	mu sync.Mutex
	ns map[string]map[string]any
}

// Merge sets fields in namespace ns, as Envoy's setDynamicMetadata merges
// a Struct into the namespace: each key of fields replaces that key's
// value, other keys stay. fields is copied.
func (d *DynamicMetadata) Merge(ns string, fields map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ns == nil {
		d.ns = map[string]map[string]any{}
	}
	// A fresh map per write: a Snapshot taken before stays as it was.
	cur := d.ns[ns]
	next := make(map[string]any, len(cur)+len(fields))
	for k, v := range cur {
		next[k] = v
	}
	for k, v := range fields {
		next[k] = v
	}
	d.ns[ns] = next
}

// Namespace returns the fields of ns (nil when absent). The map must not
// be changed.
func (d *DynamicMetadata) Namespace(ns string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ns[ns]
}

// Snapshot returns every namespace (nil when there is none). The maps
// must not be changed; later writes do not show in them.
func (d *DynamicMetadata) Snapshot() map[string]map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ns) == 0 {
		return nil
	}
	out := make(map[string]map[string]any, len(d.ns))
	for k, v := range d.ns {
		out[k] = v
	}
	return out
}

// Lookup walks ns and then keys through nested objects, as Envoy's
// metadata path lookups do; ok is false when a step is missing or not an
// object. With no keys it returns the namespace's fields.
func (d *DynamicMetadata) Lookup(ns string, keys ...string) (any, bool) {
	fields := d.Namespace(ns)
	if fields == nil {
		return nil, false
	}
	var v any = fields
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}
