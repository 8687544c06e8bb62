package config

import (
	"google.golang.org/protobuf/proto"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Overrides are the command-line options Envoy applies over the
// bootstrap file: --config-yaml, then --service-node, --service-cluster
// and --service-zone.
type Overrides struct {
	// ConfigYAML is a bootstrap (YAML or JSON) merged over the file with
	// protobuf merge semantics, as Envoy's MergeFrom: a set scalar
	// replaces, a message merges field by field, a repeated field
	// (listeners, clusters) is appended to.
	ConfigYAML string
	// ServiceNode, ServiceCluster and ServiceZone, when set, replace the
	// bootstrap's node.id, node.cluster and node.locality.zone.
	ServiceNode, ServiceCluster, ServiceZone string
}

func (o Overrides) empty() bool { return o == Overrides{} }

// LoadWith is Load with Envoy's command-line overrides applied before the
// bootstrap is validated and built, so an override is checked like the
// file's own fields. Errors in ConfigYAML name "--config-yaml".
func LoadWith(path string, o Overrides) (*Bootstrap, error) {
	return LoadPatched(path, o.Then(nil))
}

// Then returns the Patch that applies the overrides and then next (if
// not nil): Envoy merges its command line into the bootstrap before
// anything else sees it, so EnvoyFilter patches see the merged config.
// It returns next itself when there is nothing to override.
func (o Overrides) Then(next Patch) Patch {
	if o.empty() {
		return next
	}
	return func(pb *bootstrapv3.Bootstrap) error {
		if o.ConfigYAML != "" {
			over, err := decodeBootstrap([]byte(o.ConfigYAML))
			if err != nil {
				return withSource(err, "--config-yaml")
			}
			proto.Merge(pb, over)
		}
		applyNodeFlags(pb, o)
		if next != nil {
			return next(pb)
		}
		return nil
	}
}

// applyNodeFlags sets the node identity from the --service-* flags, which
// win over the bootstrap as in Envoy.
func applyNodeFlags(pb *bootstrapv3.Bootstrap, o Overrides) {
	if o.ServiceNode == "" && o.ServiceCluster == "" && o.ServiceZone == "" {
		return
	}
	if pb.Node == nil {
		pb.Node = &corev3.Node{}
	}
	if o.ServiceNode != "" {
		pb.Node.Id = o.ServiceNode
	}
	if o.ServiceCluster != "" {
		pb.Node.Cluster = o.ServiceCluster
	}
	if o.ServiceZone != "" {
		if pb.Node.Locality == nil {
			pb.Node.Locality = &corev3.Locality{}
		}
		pb.Node.Locality.Zone = o.ServiceZone
	}
}
