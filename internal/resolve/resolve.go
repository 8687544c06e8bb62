// Package resolve is the first step of every load and reload: it finds
// each Wasm plugin's code (a local file, inline bytes or a remote
// module), reads or fetches it once, and returns the model with every
// plugin carrying its bytes in Code and their digest (source.Digest) in
// CodeDigest, HTTP and network filters alike. The plan (proxy.Diff)
// then compares digests and the loader (internal/loader) builds from
// Code: nothing reads or fetches the code a second time.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/source"
)

// Options tune Model.
type Options struct {
	// ConfigDir is the config file's directory, where a relative code
	// file not found from the working directory is looked for.
	ConfigDir string
	// Fetcher fetches remote code; nil makes remote code an error.
	Fetcher *source.Fetcher
	// Startup is set for the first load. Remote code that cannot be
	// fetched then leaves its plugin without code, which the loader
	// serves by the plugin's failure policy (Envoy's and Istio's
	// fallback), and is logged. On a reload it fails the reload instead,
	// so the running version keeps serving.
	Startup bool
	// Services resolves the Wasm services too. A reload leaves them out:
	// as in Envoy, the bootstrap's services are not reloaded.
	Services bool
	// Log receives the start-up fallbacks; nil discards them.
	Log *slog.Logger
}

// Model returns cfg resolved. cfg itself is not changed: the result has
// lists of its own (config.Bootstrap.CloneLists) holding a resolved copy
// of each filter with a plugin. A code file that cannot be read is left
// without code, so that loading it reports the error, naming the file.
func Model(ctx context.Context, cfg *config.Bootstrap, opts Options) (*config.Bootstrap, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &resolver{opts: opts, files: map[string]codeFile{}, modules: map[config.RemoteCode]*source.Module{}}
	out := cfg.CloneLists()
	for _, l := range out.Listeners {
		for _, c := range l.FilterChains {
			for i, f := range c.NetworkFilters {
				if f.Wasm == nil {
					continue
				}
				w, err := r.plugin(ctx, l.Name, f.Wasm)
				if err != nil {
					return nil, err
				}
				nf := *f
				nf.Wasm = w
				c.NetworkFilters[i] = &nf
			}
			if c.HTTP == nil {
				continue
			}
			for i, f := range c.HTTP.Filters {
				if f.Wasm == nil {
					continue
				}
				w, err := r.plugin(ctx, l.Name, f.Wasm)
				if err != nil {
					return nil, err
				}
				nf := *f
				nf.Wasm = w
				c.HTTP.Filters[i] = &nf
			}
		}
	}
	if err := r.clusters(ctx, out); err != nil {
		return nil, err
	}
	if opts.Services {
		for i, svc := range out.WasmServices {
			w, err := r.plugin(ctx, fmt.Sprintf("bootstrap_extensions[%d]: %s", i, svc), svc.Wasm)
			if err != nil {
				return nil, err
			}
			ns := *svc
			ns.Wasm = w
			out.WasmServices[i] = &ns
		}
	}
	return out, nil
}

// Unavailable reports whether p is remote code that could not be
// fetched at start-up (Options.Startup): its failure policy decides.
func Unavailable(p *config.WasmPlugin) bool { return p.Remote != nil && len(p.Code) == 0 }

// resolver reads each file and fetches each module once per Model, however
// many listeners use it (an Istio plugin goes into every listener whose
// port it matches).
type resolver struct {
	opts    Options
	files   map[string]codeFile
	modules map[config.RemoteCode]*source.Module
}

// plugin returns a resolved copy of p; where names its listener (or
// service) in messages.
func (r *resolver) plugin(ctx context.Context, where string, p *config.WasmPlugin) (*config.WasmPlugin, error) {
	c := *p
	switch {
	case p.Remote != nil:
		m, err := r.fetch(ctx, p.Remote)
		if err != nil {
			if !r.opts.Startup {
				return nil, fmt.Errorf("listener %q: plugin %q: %w", where, p.Name, err)
			}
			r.opts.Log.Error("plugin code unavailable; serving without it", "listener", where, "plugin", p.Name,
				"fail_open", p.FailurePolicy == config.FailOpen, "err", err)
			return &c, nil
		}
		c.Code, c.CodeDigest = m.Code, m.ModuleDigest
	case p.CodeFile != "":
		c.CodeFile = CodeFile(p.CodeFile, r.opts.ConfigDir)
		f, ok := r.files[c.CodeFile]
		if !ok {
			code, err := os.ReadFile(c.CodeFile)
			if err != nil {
				return &c, nil // loading it says why
			}
			// Hashed once too: a plugin in both an HTTP and a network
			// filter chain (or in many listeners) costs one digest.
			f = codeFile{code: code, digest: source.Digest(code)}
			r.files[c.CodeFile] = f
		}
		c.Code, c.CodeDigest = f.code, f.digest
	default:
		c.CodeDigest = source.Digest(p.Code)
	}
	return &c, nil
}

// codeFile is a code file as read once per Model, with its digest.
type codeFile struct {
	code   []byte
	digest string
}

func (r *resolver) fetch(ctx context.Context, rc *config.RemoteCode) (*source.Module, error) {
	if m := r.modules[*rc]; m != nil {
		return m, nil
	}
	if r.opts.Fetcher == nil {
		return nil, errors.New("remote code needs a fetcher")
	}
	m, err := r.opts.Fetcher.Fetch(ctx, source.Request{
		URL:         rc.URL,
		SHA256:      rc.SHA256,
		PullPolicy:  source.PullPolicy(rc.PullPolicy),
		PullSecret:  rc.PullSecret,
		Timeout:     rc.Timeout.D(),
		Retries:     int(rc.Retries),
		BackoffBase: rc.BackoffBase.D(),
		BackoffMax:  rc.BackoffMax.D(),
	})
	if err != nil {
		return nil, err
	}
	r.modules[*rc] = m
	return m, nil
}

// CodeFile finds a plugin's code file: Envoy's rule (relative to the
// working directory) and, when nothing is there, beside the config
// file, so `wasmproxy -c examples/x/envoy.yaml` with
// `filename: ./main.wasm` works from any directory.
func CodeFile(name, configDir string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if _, err := os.Stat(name); err == nil || !errors.Is(err, os.ErrNotExist) {
		return name
	}
	alt := filepath.Join(configDir, name)
	if _, err := os.Stat(alt); err == nil {
		return alt
	}
	return name
}
