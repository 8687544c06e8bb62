package config

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// UpgradeConnect is the upgrade type of CONNECT requests (upgrade_type
// "CONNECT", lower-cased as every upgrade type in the model).
const UpgradeConnect = "connect"

// RouteUpgrade is one of a route's RouteAction.upgrade_configs: it
// enables or disables its type for the route's requests, over the
// connection manager's upgrade_configs (Envoy's route upgrade map).
type RouteUpgrade struct {
	// Type is upgrade_type, lower-cased.
	Type    string `json:"upgrade_type"`
	Enabled bool   `json:"enabled"`
}

// ConnectConfig is a CONNECT upgrade's connect_config: the proxy
// terminates the CONNECT itself (answers 200 and opens a TCP
// connection to the cluster's endpoint) instead of proxying it.
type ConnectConfig struct {
	// AllowPost (allow_post) terminates a POST on the route the same
	// way: its body goes to the TCP connection, the connection's bytes
	// come back as the 200's body (Envoy's router picks its TCP pool
	// for a CONNECT, or a POST under allow_post).
	AllowPost bool `json:"allow_post,omitempty"`
	// ProxyProtocolVersion is proxy_protocol_config.version (1 or 2), 0
	// without one: the proxy writes a PROXY protocol header of that
	// version with the downstream connection's addresses on the
	// connection before the tunnel's bytes, as Envoy's TCP upstream.
	// Its pass_through_tlvs has nothing to pass there: Envoy writes no
	// TLV on this path either.
	ProxyProtocolVersion int `json:"proxy_protocol_version,omitempty"`
}

// UpgradeEnabled reports whether an upgrade of type t (lower-cased) is
// allowed for a request routed to r (nil: no route) on a connection
// manager enabling hcmTypes, as Envoy decides it: the route's own
// upgrade_configs entry for the type wins, else the connection
// manager's.
func UpgradeEnabled(r *Route, hcmTypes []string, t string) bool {
	if r != nil {
		for _, u := range r.Upgrades {
			if u.Type == t {
				return u.Enabled
			}
		}
	}
	return slices.Contains(hcmTypes, t)
}

// upgradeType checks an upgrade_configs[i].upgrade_type: websocket and
// CONNECT are implemented (compared case-insensitively, as Envoy).
func upgradeType(t, path string) (string, error) {
	lt := strings.ToLower(t)
	if lt != "websocket" && lt != UpgradeConnect {
		return "", fieldError(path, "%q is not supported (only websocket and CONNECT)", t)
	}
	return lt, nil
}

// buildHCMUpgrades reads HttpConnectionManager.upgrade_configs into the
// enabled types and, per type (enabled or not), the entry's own filter
// chain when it has one (filters): Envoy builds that chain instead of
// http_filters for a request upgraded under the type, whether the
// connection manager or the route enabled it (its
// createUpgradeFilterChain). The chain is read as http_filters is, the
// router last.
func buildHCMUpgrades(pb []*hcmv3.HttpConnectionManager_UpgradeConfig, path, statPrefix string) ([]string, map[string][]*HTTPFilter, error) {
	var types, seen []string
	var chains map[string][]*HTTPFilter
	for i, u := range pb {
		at := joinPath(path, fmt.Sprintf("upgrade_configs[%d]", i))
		t, err := upgradeType(u.GetUpgradeType(), joinPath(at, "upgrade_type"))
		if err != nil {
			return nil, nil, err
		}
		if slices.Contains(seen, t) {
			return nil, nil, fieldError(joinPath(at, "upgrade_type"), "%q is configured twice", u.GetUpgradeType())
		}
		seen = append(seen, t)
		if e := u.GetEnabled(); e == nil || e.GetValue() {
			types = append(types, t)
		}
		if len(u.GetFilters()) == 0 {
			continue
		}
		fs, err := buildHTTPFilters(u.GetFilters(), joinPath(at, "filters"), statPrefix)
		if err != nil {
			return nil, nil, err
		}
		for j, f := range fs {
			if f.Wasm != nil {
				// The plugin's code is resolved, watched and reloaded
				// through http_filters only.
				return nil, nil, notSupported(indexPath(joinPath(at, "filters"), j), "a Wasm filter in an upgrade's filter chain")
			}
		}
		if chains == nil {
			chains = map[string][]*HTTPFilter{}
		}
		chains[t] = fs
	}
	return types, chains, nil
}

// buildRouteUpgrades reads RouteAction.upgrade_configs with Envoy's
// checks (a type once; connect_config only on CONNECT).
func buildRouteUpgrades(pb []*routev3.RouteAction_UpgradeConfig, path string) ([]RouteUpgrade, *ConnectConfig, error) {
	var ups []RouteUpgrade
	var cc *ConnectConfig
	for i, u := range pb {
		at := indexPath(path, i)
		t, err := upgradeType(u.GetUpgradeType(), joinPath(at, "upgrade_type"))
		if err != nil {
			return nil, nil, err
		}
		if slices.ContainsFunc(ups, func(x RouteUpgrade) bool { return x.Type == t }) {
			// Envoy's words (router/config_impl.cc).
			return nil, nil, fieldError(joinPath(at, "upgrade_type"), "Duplicate upgrade %s", u.GetUpgradeType())
		}
		ups = append(ups, RouteUpgrade{Type: t, Enabled: u.GetEnabled() == nil || u.GetEnabled().GetValue()})
		if c := u.GetConnectConfig(); c != nil {
			if t != UpgradeConnect {
				return nil, nil, fieldError(joinPath(at, "connect_config"), "Non-CONNECT upgrade type %s has ConnectConfig", u.GetUpgradeType())
			}
			cc = &ConnectConfig{AllowPost: c.GetAllowPost()}
			if pp := c.GetProxyProtocolConfig(); pp != nil {
				cc.ProxyProtocolVersion = int(pp.GetVersion()) + 1 // V1 is 0, V2 is 1
				if cc.ProxyProtocolVersion != 1 && cc.ProxyProtocolVersion != 2 {
					return nil, nil, fieldError(joinPath(at, "connect_config.proxy_protocol_config.version"), "unknown version %d", pp.GetVersion())
				}
			}
		}
	}
	return ups, cc, nil
}
