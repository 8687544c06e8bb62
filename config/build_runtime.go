package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Runtime is layered_runtime: Envoy's runtime, a stack of layers whose
// later entries win. wasmproxy reads static layers (the config's own
// values) and disk layers (a directory tree, read at load and at every
// reload) and keeps admin layers for /runtime_modify; /runtime shows
// them as Envoy does. Values are strings, as Envoy's runtime snapshot
// holds them.
type Runtime struct {
	Layers []RuntimeLayer `json:"layers"`
}

// RuntimeLayer is one layer of the runtime.
type RuntimeLayer struct {
	Name string `json:"name"`
	// Kind is "static", "disk" or "admin".
	Kind string `json:"kind"`
	// Values are a static or disk layer's entries; an admin layer's are
	// set while the process runs.
	Values map[string]string `json:"values,omitempty"`
	// Dir is the directory a disk layer was read from.
	Dir string `json:"dir,omitempty"`
}

// HasAdminLayer reports whether the runtime has the admin layer that
// /runtime_modify writes.
func (r *Runtime) HasAdminLayer() bool {
	if r == nil {
		return false
	}
	for _, l := range r.Layers {
		if l.Kind == "admin" {
			return true
		}
	}
	return false
}

// buildRuntime reads layered_runtime. Without one, Envoy's runtime is
// empty; the deprecated top-level runtime field is refused by the
// allow-list.
func buildRuntime(pb *bootstrapv3.LayeredRuntime, serviceCluster string) (*Runtime, error) {
	if pb == nil {
		return nil, nil
	}
	r := &Runtime{}
	names := map[string]bool{}
	for i, l := range pb.GetLayers() {
		path := indexPath("layered_runtime.layers", i)
		if l.GetName() == "" {
			return nil, fieldError(joinPath(path, "name"), "missing: every runtime layer needs a name")
		}
		if names[l.GetName()] {
			return nil, fieldError(joinPath(path, "name"), "duplicate layer name %q", l.GetName())
		}
		names[l.GetName()] = true
		layer := RuntimeLayer{Name: l.GetName()}
		switch spec := l.GetLayerSpecifier().(type) {
		case *bootstrapv3.RuntimeLayer_StaticLayer:
			layer.Kind, layer.Values = "static", map[string]string{}
			if err := flattenRuntime(spec.StaticLayer, "", layer.Values, joinPath(path, "static_layer")); err != nil {
				return nil, err
			}
		case *bootstrapv3.RuntimeLayer_DiskLayer_:
			layer.Kind = "disk"
			dir := spec.DiskLayer.GetSymlinkRoot()
			if sub := spec.DiskLayer.GetSubdirectory(); sub != "" {
				dir = filepath.Join(dir, sub)
			}
			if spec.DiskLayer.GetAppendServiceCluster() && serviceCluster != "" {
				dir = filepath.Join(dir, serviceCluster)
			}
			layer.Dir = dir
			values, err := readRuntimeDir(dir)
			if err != nil {
				return nil, fieldError(joinPath(path, "disk_layer"), "reading %s: %v", dir, err)
			}
			layer.Values = values
		case *bootstrapv3.RuntimeLayer_AdminLayer_:
			if r.HasAdminLayer() {
				return nil, fieldError(path, "a second admin_layer: at most one may be given, as in Envoy")
			}
			layer.Kind = "admin"
		case *bootstrapv3.RuntimeLayer_RtdsLayer_:
			return nil, notSupported(joinPath(path, "rtds_layer"), "runtime over xDS (RTDS)")
		default:
			return nil, fieldError(path, "missing: a layer needs static_layer, disk_layer or admin_layer")
		}
		r.Layers = append(r.Layers, layer)
	}
	return r, nil
}

// flattenRuntime turns a static layer into runtime entries: nested
// objects join their keys with dots, as Envoy flattens them; leaves are
// strings as Envoy's snapshot prints them (numbers in their shortest
// form, booleans true/false). A list is not a runtime value.
func flattenRuntime(s *structpb.Struct, prefix string, out map[string]string, path string) error {
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.GetFields()[k]
		key := prefix + k
		switch x := v.GetKind().(type) {
		case *structpb.Value_StructValue:
			if err := flattenRuntime(x.StructValue, key+".", out, path); err != nil {
				return err
			}
		case *structpb.Value_StringValue:
			out[key] = x.StringValue
		case *structpb.Value_NumberValue:
			out[key] = strconv.FormatFloat(x.NumberValue, 'f', -1, 64)
		case *structpb.Value_BoolValue:
			out[key] = strconv.FormatBool(x.BoolValue)
		case *structpb.Value_NullValue:
			out[key] = ""
		default:
			return fieldError(keyPath(path, key), "a list is not a runtime value")
		}
	}
	return nil
}

// maxRuntimeDiskEntries bounds the walk of a disk layer, so that a
// mistaken root (say "/") fails fast instead of reading the filesystem.
const maxRuntimeDiskEntries = 10000

// readRuntimeDir reads a disk layer: every regular file under dir is an
// entry whose key is its path below dir with "/" as ".", and whose value
// is its content without surrounding whitespace. A missing directory is
// an empty layer, as in Envoy (which watches for it to appear).
func readRuntimeDir(dir string) (map[string]string, error) {
	out := map[string]string{}
	// symlink_root is a symbolic link in Envoy's deployments (swapped to
	// publish a new version); walk what it points to.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	entries := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if entries++; entries > maxRuntimeDiskEntries {
			return fmt.Errorf("more than %d files and directories: is this the runtime's directory?", maxRuntimeDiskEntries)
		}
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[strings.ReplaceAll(filepath.ToSlash(rel), "/", ".")] = strings.TrimSpace(string(b))
		return nil
	})
	return out, err
}
