package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// RemoteCode is where a plugin's code is fetched from: Envoy's
// vm_config.code.remote, or an Istio WasmPlugin's url.
type RemoteCode struct {
	// URL is http://, https:// or oci://.
	URL string `json:"url"`
	// SHA256 is the expected digest in hex: the module's for http(s), the
	// image manifest's for oci:// (Istio's rule). Envoy requires it;
	// Istio does not.
	SHA256 string `json:"sha256,omitempty"`
	// Cluster is http_uri.cluster, recorded only: wasmproxy fetches
	// directly rather than through a cluster.
	Cluster string `json:"cluster,omitempty"`
	// Timeout bounds each attempt (http_uri.timeout).
	Timeout Duration `json:"timeout,omitempty"`
	// Retries, BackoffBase, BackoffMax are retry_policy; zero = Envoy's
	// defaults (1 retry, 1s base, 10x base max).
	Retries     uint32   `json:"retries,omitempty"`
	BackoffBase Duration `json:"backoff_base,omitempty"`
	BackoffMax  Duration `json:"backoff_max,omitempty"`
	// PullPolicy is "", "IfNotPresent" or "Always" (Istio's
	// imagePullPolicy; "" = IfNotPresent, Always for the tag latest).
	PullPolicy string `json:"pull_policy,omitempty"`
	// PullSecret is a file with registry credentials (Istio's
	// imagePullSecret, resolved to a file by the loader).
	PullSecret string `json:"pull_secret,omitempty"`
}

// buildRemoteCode reads vm_config.code.remote. Envoy's own validation has
// already required http_uri, its uri and timeout, and a sha256.
func buildRemoteCode(pb *corev3.RemoteDataSource, path string) (*RemoteCode, error) {
	uri := pb.GetHttpUri()
	r := &RemoteCode{
		URL:     uri.GetUri(),
		SHA256:  strings.ToLower(pb.GetSha256()),
		Cluster: uri.GetCluster(),
		Timeout: Duration(uri.GetTimeout().AsDuration()),
	}
	if err := CheckRemoteURL(r.URL); err != nil {
		return nil, fieldError(joinPath(path, "http_uri.uri"), "%s", err.Error())
	}
	if _, err := hex.DecodeString(r.SHA256); err != nil || len(r.SHA256) != 64 {
		return nil, fieldError(joinPath(path, "sha256"), "%q is not a sha256 digest (64 hexadecimal characters)", pb.GetSha256())
	}
	if rp := pb.GetRetryPolicy(); rp != nil {
		if n := rp.GetNumRetries(); n != nil {
			r.Retries = n.GetValue()
		} else {
			r.Retries = 1
		}
		if b := rp.GetRetryBackOff(); b != nil {
			r.BackoffBase = Duration(b.GetBaseInterval().AsDuration())
			if m := b.GetMaxInterval(); m != nil {
				r.BackoffMax = Duration(m.AsDuration())
				if r.BackoffMax < r.BackoffBase {
					return nil, fieldError(joinPath(path, "retry_policy.retry_back_off.max_interval"), "%s is less than base_interval %s", time.Duration(r.BackoffMax), time.Duration(r.BackoffBase))
				}
			}
		}
	}
	return r, nil
}

// CheckRemoteURL accepts http://, https:// and oci:// URLs with a host.
// Its error quotes the URL with any password redacted.
func CheckRemoteURL(raw string) error {
	shown := redact.Text(raw)
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok:
		return fmt.Errorf("%q has no scheme (want http://, https:// or oci://)", shown)
	case scheme == "oci":
		host, repo, _ := strings.Cut(rest, "/")
		if host == "" || repo == "" {
			return fmt.Errorf("%q is not oci://HOST/REPOSITORY[:TAG][@sha256:DIGEST]", shown)
		}
		return nil
	case scheme == "http" || scheme == "https":
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a valid URL", shown)
		}
		return nil
	}
	return fmt.Errorf("unsupported scheme %q in %q (want http://, https:// or oci://)", scheme, shown)
}
