package wasmproxy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/xds"
)

// xdsResources are the listeners and clusters a control plane delivered
// over ADS and the proxy accepted. Each load appends them to the decoded
// bootstrap's static_resources (patch), so an xDS update is one more
// trigger of the reload pipeline: built, checked and swapped exactly as
// a changed file is, and refused with the same errors.
type xdsResources struct {
	mu        sync.Mutex
	listeners []*listenerv3.Listener
	clusters  []*clusterv3.Cluster
	// The static counts of the last patch: resources past them came from
	// xDS, which error paths are rewritten to name.
	staticListeners, staticClusters int
}

// patch appends the accepted resources to pb's static_resources.
func (r *xdsResources) patch(pb *bootstrapv3.Bootstrap) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.listeners) == 0 && len(r.clusters) == 0 {
		return nil
	}
	if pb.StaticResources == nil {
		pb.StaticResources = &bootstrapv3.Bootstrap_StaticResources{}
	}
	sr := pb.StaticResources
	r.staticListeners, r.staticClusters = len(sr.Listeners), len(sr.Clusters)
	for _, l := range r.listeners {
		sr.Listeners = append(sr.Listeners, proto.Clone(l).(*listenerv3.Listener))
	}
	for _, c := range r.clusters {
		sr.Clusters = append(sr.Clusters, proto.Clone(c).(*clusterv3.Cluster))
	}
	return nil
}

// startXDS runs the ADS client of the bootstrap's dynamic_resources
// until ctx ends: CDS first, then LDS, as Envoy subscribes.
func (p *Proxy) startXDS(ctx context.Context, ads *config.ADS, node *config.Node) error {
	if p.opts.Bootstrap != nil {
		return errors.New("dynamic_resources: a control plane's resources patch a config file (Options.ConfigPath), not a built model (Options.Bootstrap)")
	}
	var n corev3.Node
	if node != nil {
		if err := proto.Unmarshal(node.Proto, &n); err != nil {
			return fmt.Errorf("dynamic_resources: node: %w", err)
		}
	}
	var types []string
	if ads.CDS {
		types = append(types, xds.ClusterType)
	}
	if ads.LDS {
		types = append(types, xds.ListenerType)
	}
	if len(types) == 0 {
		return nil
	}
	connected := p.stats.Gauge("control_plane.connected_state")
	p.spawn(func() {
		_ = xds.Run(ctx, xds.Options{
			Target: ads.Target, Node: &n, SetNodeOnFirstMessageOnly: ads.SetNodeOnFirstMessageOnly,
			Types: types, Handler: p.applyXDS, Logger: p.logs.Logger("upstream"),
			Connected: func(up bool) {
				if up {
					connected.Set(1)
				} else {
					connected.Set(0)
				}
			},
		})
	})
	p.log.Info("xDS client started", "cluster", ads.Cluster, "target", ads.Target)
	return nil
}

// applyXDS is the ADS handler: the resources become the accepted set of
// their type if the reload they trigger succeeds; otherwise the previous
// set stays (a NACK changes nothing) and the error, naming the resource,
// goes back to the control plane.
func (p *Proxy) applyXDS(ctx context.Context, typeURL, version string, resources []*anypb.Any) error {
	r := &p.xds
	var listeners []*listenerv3.Listener
	var clusters []*clusterv3.Cluster
	seen := map[string]bool{}
	for i, a := range resources {
		var name string
		switch typeURL {
		case xds.ListenerType:
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			listeners, name = append(listeners, l), l.GetName()
		case xds.ClusterType:
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			clusters, name = append(clusters, c), c.GetName()
		default:
			return fmt.Errorf("type %s was not subscribed to", typeURL)
		}
		if seen[name] {
			return fmt.Errorf("resource %d: duplicate name %q", i, name)
		}
		seen[name] = true
	}
	r.mu.Lock()
	oldL, oldC := r.listeners, r.clusters
	if typeURL == xds.ListenerType {
		r.listeners = listeners
	} else {
		r.clusters = clusters
	}
	r.mu.Unlock()
	if _, err := p.Reload(ctx, "xds"); err != nil {
		r.mu.Lock()
		r.listeners, r.clusters = oldL, oldC
		err = r.describe(err)
		r.mu.Unlock()
		return err
	}
	return nil
}

var staticPath = regexp.MustCompile(`^static_resources\.(listeners|clusters)\[(\d+)\]`)

// describe rewrites a config error about a resource that came from xDS
// so that it names the resource, not its place in the merged bootstrap.
// r.mu is held.
func (r *xdsResources) describe(err error) error {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return err
	}
	m := staticPath.FindStringSubmatch(ce.Path)
	if m == nil {
		return err
	}
	i, _ := strconv.Atoi(m[2])
	var name string
	switch {
	case m[1] == "listeners" && i >= r.staticListeners && i-r.staticListeners < len(r.listeners):
		name = fmt.Sprintf("listener %q", r.listeners[i-r.staticListeners].GetName())
	case m[1] == "clusters" && i >= r.staticClusters && i-r.staticClusters < len(r.clusters):
		name = fmt.Sprintf("cluster %q", r.clusters[i-r.staticClusters].GetName())
	default:
		return err
	}
	c := *ce
	c.Source = "xDS " + name
	c.Path = ce.Path[len(m[0]):]
	if len(c.Path) > 0 && c.Path[0] == '.' {
		c.Path = c.Path[1:]
	}
	return &c
}
