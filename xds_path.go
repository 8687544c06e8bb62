package wasmproxy

import (
	"context"
	"fmt"
	"os"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/filestamp"
	"github.com/wasmproxy/wasmproxy/xds"
)

// xdsFile is one path config source (Envoy's filesystem subscription):
// a file holding a DiscoveryResponse of typeURL, applied like an ADS
// response whenever its content changes. The files are watched by the
// reload poller (poll), which owns every field but the constants.
type xdsFile struct {
	// field names the config source in errors.
	typeURL, path, field string
	// after, if not nil, holds the first read back until it is closed:
	// listeners from a file wait for the clusters over ADS, as Envoy's
	// listener manager waits for the cluster manager's initialization.
	after <-chan struct{}
	// stamp is the content last applied (or refused); nil before the
	// first read.
	stamp filestamp.Set
	// first is called after the first read, applied or not.
	first func()
	// named: the source is named by a delivered resource (EDS, RDS),
	// not by dynamic_resources; it goes when no resource names it.
	named bool
}

// syncXDSFiles adds the path config sources the delivered resources name
// (xdsResources.paths) to p.xdsFiles and drops those no longer named.
// Called from the poller's goroutine only.
func (p *Proxy) syncXDSFiles() {
	r := &p.xds
	r.mu.Lock()
	want := make(map[string]string, len(r.paths))
	for path, t := range r.paths {
		want[path] = t
	}
	r.mu.Unlock()
	files := p.xdsFiles[:0:0]
	have := map[string]bool{}
	for _, f := range p.xdsFiles {
		if f.named && want[f.path] != f.typeURL {
			continue
		}
		files = append(files, f)
		have[f.path] = true
	}
	for _, path := range sortedNames(want) {
		if !have[path] {
			field := map[string]string{
				xds.EndpointType:        "a delivered cluster's eds_config",
				xds.RouteType:           "a delivered listener's rds.config_source",
				xds.ExtensionConfigType: "a delivered HTTP filter's config_discovery.config_source",
				xds.SecretType:          "a delivered TLS context's sds_config",
			}[want[path]]
			files = append(files, &xdsFile{typeURL: want[path], path: path, field: field, named: true})
		}
	}
	p.xdsFiles = files
}

// xdsFileSources are the path config sources of dynamic_resources, CDS
// first. A missing file is an error naming the field, as Envoy's
// bootstrap check ("paths must refer to an existing path").
func xdsFileSources(ads *config.ADS, cdsReady <-chan struct{}) ([]*xdsFile, error) {
	var files []*xdsFile
	if ads.CDSPath != "" {
		files = append(files, &xdsFile{typeURL: xds.ClusterType, path: ads.CDSPath, field: "dynamic_resources.cds_config"})
	}
	if ads.LDSPath != "" {
		f := &xdsFile{typeURL: xds.ListenerType, path: ads.LDSPath, field: "dynamic_resources.lds_config"}
		if ads.CDSPath == "" {
			f.after = cdsReady // the clusters of a stream (none: closed)
		}
		files = append(files, f)
	}
	for _, f := range files {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s.path_config_source.path: paths must refer to an existing path in the system: %w", f.field, err)
		}
	}
	return files, nil
}

// pollXDSFiles applies each file source whose content changed since it
// was last read (settled: a file being written is read once it stops
// changing). Called from the poller's goroutine only.
func (p *Proxy) pollXDSFiles(ctx context.Context) {
	p.syncXDSFiles()
	for _, f := range p.xdsFiles {
		if f.stamp == nil && f.after != nil {
			select {
			case <-f.after:
			default:
				continue // not yet: read when the poller is woken
			}
		}
		now, changed := settled(ctx, []string{f.path}, f.stamp)
		if !changed && f.stamp != nil {
			continue
		}
		f.stamp = now
		p.readXDSFile(ctx, f)
		if f.first != nil {
			f.first()
			f.first = nil
		}
	}
}

// readXDSFile applies the DiscoveryResponse in f. A file that cannot be
// read or decoded is Envoy's update_failure; one whose resources the
// proxy refuses is update_rejected (applyXDS counts it) and, as a
// NACK, changes nothing: the last accepted resources keep serving.
func (p *Proxy) readXDSFile(ctx context.Context, f *xdsFile) {
	r := &p.xds
	r.mu.Lock()
	scopes := r.statScopes(f.typeURL, nil)
	r.mu.Unlock()
	resp, err := config.LoadDiscoveryResponse(f.path)
	if err == nil && resp.GetTypeUrl() != "" && resp.GetTypeUrl() != f.typeURL {
		err = fmt.Errorf("%s: type_url %s, want %s (the file of %s)", f.path, resp.GetTypeUrl(), f.typeURL, f.field)
	}
	if err != nil {
		p.xdsAttempt(scopes)
		for _, s := range scopes {
			p.stats.Counter(s.prefix + "update_failure").Inc()
		}
		p.log.Error("xDS file not read; the last accepted resources keep serving", "file", f.path, "err", err)
		return
	}
	if err := p.applyXDS(ctx, f.typeURL, resp.GetVersionInfo(), resp.GetResources()); err != nil {
		p.log.Error("xDS file rejected; the last accepted resources keep serving", "file", f.path, "version", resp.GetVersionInfo(), "err", err)
		return
	}
	p.log.Info("xDS file applied", "file", f.path, "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
}
