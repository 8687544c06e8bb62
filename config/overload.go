package config

import (
	"time"

	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const (
	fixedHeapName           protoreflect.FullName = "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig"
	downstreamConnsName     protoreflect.FullName = "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
	GlobalDownstreamMaxConn                       = "envoy.resource_monitors.global_downstream_max_connections"
)

// The overload actions wasmproxy implements (Envoy's well-known names).
const (
	OverloadStopAcceptingRequests    = "envoy.overload_actions.stop_accepting_requests"
	OverloadDisableHTTPKeepalive     = "envoy.overload_actions.disable_http_keepalive"
	OverloadStopAcceptingConnections = "envoy.overload_actions.stop_accepting_connections"
	OverloadShrinkHeap               = "envoy.overload_actions.shrink_heap"
)

var overloadActions = map[string]bool{
	OverloadStopAcceptingRequests:    true,
	OverloadDisableHTTPKeepalive:     true,
	OverloadStopAcceptingConnections: true,
	OverloadShrinkHeap:               true,
}

// DefaultOverloadRefreshInterval is Envoy's refresh_interval default.
const DefaultOverloadRefreshInterval = time.Second

// OverloadManager is the bootstrap's overload_manager: resource monitors
// read every RefreshInterval, and actions whose state (0 to 1) their
// triggers compute from the monitors' pressures (proxy/overload.go).
type OverloadManager struct {
	RefreshInterval Duration          `json:"refresh_interval"`
	Monitors        []OverloadMonitor `json:"resource_monitors"`
	Actions         []OverloadAction  `json:"actions,omitempty"`
}

// OverloadMonitor is one resource monitor: the fixed heap monitor, whose
// pressure is the heap in use over MaxHeapBytes, or (MaxConnections
// set) the global downstream connections monitor, named
// GlobalDownstreamMaxConn: Envoy's proactive monitor, whose limit the
// listeners enforce as they accept, and whose pressure is the open
// downstream connections over MaxConnections.
type OverloadMonitor struct {
	Name           string `json:"name"`
	MaxHeapBytes   uint64 `json:"max_heap_size_bytes,omitempty"`
	MaxConnections int64  `json:"max_active_downstream_connections,omitempty"`
}

// OverloadAction is one action and its triggers; its state is the
// largest of its triggers' values.
type OverloadAction struct {
	Name     string            `json:"name"`
	Triggers []OverloadTrigger `json:"triggers"`
}

// OverloadTrigger maps a monitor's pressure to a value: with Threshold
// set (Scaled false), 1 at or above it, else 0; Scaled, 0 below
// ScalingThreshold, 1 at or above SaturationThreshold, linear between.
type OverloadTrigger struct {
	Monitor             string  `json:"name"`
	Scaled              bool    `json:"scaled,omitempty"`
	Threshold           float64 `json:"threshold,omitempty"`
	ScalingThreshold    float64 `json:"scaling_threshold,omitempty"`
	SaturationThreshold float64 `json:"saturation_threshold,omitempty"`
}

// Value is the trigger's value for a pressure.
func (t OverloadTrigger) Value(pressure float64) float64 {
	if !t.Scaled {
		if pressure >= t.Threshold {
			return 1
		}
		return 0
	}
	switch {
	case pressure < t.ScalingThreshold:
		return 0
	case pressure >= t.SaturationThreshold:
		return 1
	}
	return (pressure - t.ScalingThreshold) / (t.SaturationThreshold - t.ScalingThreshold)
}

// buildOverloadManager reads overload_manager with Envoy's checks
// (server/overload_manager_impl.cc): unique monitor and action names,
// triggers naming configured monitors, once per action, and a scaled
// trigger's scaling threshold below its saturation threshold.
func buildOverloadManager(pb *overloadv3.OverloadManager, path string) (*OverloadManager, error) {
	if pb == nil {
		return nil, nil
	}
	om := &OverloadManager{RefreshInterval: Duration(DefaultOverloadRefreshInterval)}
	if d := pb.GetRefreshInterval(); d != nil {
		v, err := nonNegative(d, joinPath(path, "refresh_interval"))
		if err != nil {
			return nil, err
		}
		if v.D() <= 0 {
			return nil, fieldError(joinPath(path, "refresh_interval"), "must be greater than 0")
		}
		om.RefreshInterval = v
	}
	monitors := map[string]bool{}
	for i, m := range pb.GetResourceMonitors() {
		at := indexPath(joinPath(path, "resource_monitors"), i)
		if monitors[m.GetName()] {
			// Envoy's words.
			return nil, fieldError(joinPath(at, "name"), "Duplicate resource monitor %s", m.GetName())
		}
		monitors[m.GetName()] = true
		payload, payloadPath, err := unpackAny(m.GetTypedConfig(), joinPath(at, "typed_config"))
		if err != nil {
			return nil, err
		}
		if dc, ok := payload.(*downstreamv3.DownstreamConnectionsConfig); ok {
			// Envoy takes this monitor as its proactive resource only
			// under its well-known name; under another name no factory
			// has the type, and the proactive name takes no other type.
			if m.GetName() != GlobalDownstreamMaxConn {
				return nil, fieldError(joinPath(at, "name"), "Didn't find a registered implementation for '%s' with type URL: '%s' (a DownstreamConnectionsConfig monitor must be named %s)", m.GetName(), downstreamConnsName, GlobalDownstreamMaxConn)
			}
			if dc.GetMaxActiveDownstreamConnections() <= 0 {
				return nil, fieldError(joinPath(payloadPath, "max_active_downstream_connections"), "value must be greater than 0")
			}
			om.Monitors = append(om.Monitors, OverloadMonitor{Name: m.GetName(), MaxConnections: dc.GetMaxActiveDownstreamConnections()})
			continue
		}
		fh, ok := payload.(*fixedheapv3.FixedHeapConfig)
		if !ok {
			return nil, notSupportedType(joinPath(at, "typed_config"), m.GetTypedConfig().GetTypeUrl())
		}
		if m.GetName() == GlobalDownstreamMaxConn {
			return nil, fieldError(joinPath(at, "name"), "Didn't find a registered implementation for '%s' with type URL: '%s' (%s takes a DownstreamConnectionsConfig)", m.GetName(), fixedHeapName, GlobalDownstreamMaxConn)
		}
		if fh.GetMaxHeapSizeBytes() == 0 {
			return nil, fieldError(joinPath(payloadPath, "max_heap_size_bytes"), "value must be greater than 0")
		}
		om.Monitors = append(om.Monitors, OverloadMonitor{Name: m.GetName(), MaxHeapBytes: fh.GetMaxHeapSizeBytes()})
	}
	actions := map[string]bool{}
	for i, a := range pb.GetActions() {
		at := indexPath(joinPath(path, "actions"), i)
		if actions[a.GetName()] {
			return nil, fieldError(joinPath(at, "name"), "Duplicate overload action %s", a.GetName())
		}
		actions[a.GetName()] = true
		if !overloadActions[a.GetName()] {
			return nil, notSupported(joinPath(at, "name"), a.GetName())
		}
		act := OverloadAction{Name: a.GetName()}
		seen := map[string]bool{}
		for j, tr := range a.GetTriggers() {
			tat := indexPath(joinPath(at, "triggers"), j)
			if !monitors[tr.GetName()] {
				return nil, fieldError(joinPath(tat, "name"), "Unknown trigger resource %s", tr.GetName())
			}
			if seen[tr.GetName()] {
				return nil, fieldError(joinPath(tat, "name"), "Duplicate trigger resource for overload action %s", a.GetName())
			}
			seen[tr.GetName()] = true
			t := OverloadTrigger{Monitor: tr.GetName()}
			switch {
			case tr.GetThreshold() != nil:
				t.Threshold = tr.GetThreshold().GetValue()
			case tr.GetScaled() != nil:
				t.Scaled = true
				t.ScalingThreshold = tr.GetScaled().GetScalingThreshold()
				t.SaturationThreshold = tr.GetScaled().GetSaturationThreshold()
				if t.ScalingThreshold >= t.SaturationThreshold {
					return nil, fieldError(joinPath(tat, "scaled"), "scaling_threshold must be less than saturation_threshold")
				}
			}
			act.Triggers = append(act.Triggers, t)
		}
		om.Actions = append(om.Actions, act)
	}
	return om, nil
}
