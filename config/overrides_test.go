package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

// nodeFile writes testdata/node.envoytest's bootstrap (before its
// "----------" expectation) to a file.
func nodeFile(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile("testdata/node.envoytest")
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(string(text), "----------")
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigYAMLMerge: --config-yaml merges as Envoy's MergeFrom — a set
// scalar replaces (admin port), a message merges field by field (node
// keeps its cluster), a repeated field appends (a second cluster).
func TestConfigYAMLMerge(t *testing.T) {
	b, err := LoadWith(nodeFile(t), Overrides{ConfigYAML: `
node: {id: from-flag}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9999}}}
static_resources:
  clusters:
    - name: extra
      type: STATIC
      load_assignment:
        cluster_name: extra
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]
`})
	if err != nil {
		t.Fatal(err)
	}
	if b.Node.ID != "from-flag" || b.Node.Cluster != "edge" {
		t.Errorf("node %+v, want id from-flag, cluster edge kept", b.Node)
	}
	if b.Admin == nil || b.Admin.Address != "127.0.0.1:9999" {
		t.Errorf("admin %+v", b.Admin)
	}
	var names []string
	for _, c := range b.Clusters {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "backend,extra" {
		t.Errorf("clusters %v, want backend,extra", names)
	}
	var dump map[string]any
	if err := json.Unmarshal(b.RawJSON, &dump); err != nil || !strings.Contains(string(b.RawJSON), `"port_value":9999`) {
		t.Errorf("the bootstrap dump is not the merged one: %v\n%s", err, b.RawJSON)
	}
}

// TestServiceFlags: --service-node/cluster/zone replace the bootstrap's
// node identity, in the model and in the node plugins read (xds.node).
func TestServiceFlags(t *testing.T) {
	b, err := LoadWith(nodeFile(t), Overrides{ServiceNode: "n2", ServiceCluster: "c2", ServiceZone: "z2", ConfigYAML: "node: {id: from-yaml}"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Node.ID != "n2" || b.Node.Cluster != "c2" {
		t.Errorf("node %+v", b.Node)
	}
	var n corev3.Node
	if err := proto.Unmarshal(b.Node.Proto, &n); err != nil {
		t.Fatal(err)
	}
	if n.GetId() != "n2" || n.GetCluster() != "c2" || n.GetLocality().GetZone() != "z2" || n.GetLocality().GetRegion() != "eu-west-1" {
		t.Errorf("xds.node %v", &n)
	}
}

// TestConfigYAMLErrors: an error in --config-yaml names it; an override
// is validated like the file (an unknown field is refused).
func TestConfigYAMLErrors(t *testing.T) {
	path := nodeFile(t)
	for yaml, want := range map[string]string{
		"node: [":        "--config-yaml",
		"nodes: {id: x}": `--config-yaml: nodes: unknown field`,
		"admin: {address: {socket_address: {address: 127.0.0.1, port_value: 70000}}}": "port_value",
	} {
		_, err := LoadWith(path, Overrides{ConfigYAML: yaml})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", yaml, err, want)
		}
	}
}
