package config

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// OutlierDetection is a cluster's passive health checking (Envoy's
// cluster.v3.OutlierDetection), every field with Envoy's default filled
// in. Hosts are ejected on consecutive errors or, at each Interval, by
// success rate or failure percentage among the cluster's hosts.
type OutlierDetection struct {
	Consecutive5xx                uint32 `json:"consecutive_5xx"`
	ConsecutiveGatewayFailure     uint32 `json:"consecutive_gateway_failure"`
	ConsecutiveLocalOriginFailure uint32 `json:"consecutive_local_origin_failure"`
	// Enforcing* are the percentages of detections that eject.
	EnforcingConsecutive5xx                uint32 `json:"enforcing_consecutive_5xx"`
	EnforcingConsecutiveGatewayFailure     uint32 `json:"enforcing_consecutive_gateway_failure"`
	EnforcingConsecutiveLocalOriginFailure uint32 `json:"enforcing_consecutive_local_origin_failure"`
	EnforcingSuccessRate                   uint32 `json:"enforcing_success_rate"`
	EnforcingLocalOriginSuccessRate        uint32 `json:"enforcing_local_origin_success_rate"`
	EnforcingFailurePercentage             uint32 `json:"enforcing_failure_percentage"`
	EnforcingFailurePercentageLocalOrigin  uint32 `json:"enforcing_failure_percentage_local_origin"`
	// SplitExternalLocalOriginErrors counts connect failures, resets and
	// timeouts apart (consecutive_local_origin_failure) instead of as
	// 503/504 responses.
	SplitExternalLocalOriginErrors bool     `json:"split_external_local_origin_errors,omitempty"`
	Interval                       Duration `json:"interval"`
	BaseEjectionTime               Duration `json:"base_ejection_time"`
	MaxEjectionTime                Duration `json:"max_ejection_time"`
	MaxEjectionTimeJitter          Duration `json:"max_ejection_time_jitter,omitempty"`
	MaxEjectionPercent             uint32   `json:"max_ejection_percent"`
	AlwaysEjectOneHost             bool     `json:"always_eject_one_host,omitempty"`
	// Success rate: hosts with SuccessRateRequestVolume requests in the
	// last interval, when at least SuccessRateMinimumHosts have, are
	// ejected below mean - stdev × SuccessRateStdevFactor/1000.
	SuccessRateMinimumHosts  uint32 `json:"success_rate_minimum_hosts"`
	SuccessRateRequestVolume uint32 `json:"success_rate_request_volume"`
	SuccessRateStdevFactor   uint32 `json:"success_rate_stdev_factor"`
	// Failure percentage: hosts failing FailurePercentageThreshold % or
	// more of FailurePercentageRequestVolume requests or more.
	FailurePercentageThreshold     uint32 `json:"failure_percentage_threshold"`
	FailurePercentageMinimumHosts  uint32 `json:"failure_percentage_minimum_hosts"`
	FailurePercentageRequestVolume uint32 `json:"failure_percentage_request_volume"`
	// SuccessfulActiveHealthCheckUnejectHost: a passing active health
	// check ends an ejection (default true).
	SuccessfulActiveHealthCheckUnejectHost bool `json:"successful_active_health_check_uneject_host"`
}

func u32Or(v *wrapperspb.UInt32Value, def uint32) uint32 {
	if v == nil {
		return def
	}
	return v.GetValue()
}

// buildOutlierDetection fills Envoy's defaults (outlier_detection_impl.h).
func buildOutlierDetection(pb *clusterv3.OutlierDetection, path string) (*OutlierDetection, error) {
	if pb == nil {
		return nil, nil
	}
	od := &OutlierDetection{
		Consecutive5xx:                         u32Or(pb.GetConsecutive_5Xx(), 5),
		ConsecutiveGatewayFailure:              u32Or(pb.GetConsecutiveGatewayFailure(), 5),
		ConsecutiveLocalOriginFailure:          u32Or(pb.GetConsecutiveLocalOriginFailure(), 5),
		EnforcingConsecutive5xx:                u32Or(pb.GetEnforcingConsecutive_5Xx(), 100),
		EnforcingConsecutiveGatewayFailure:     u32Or(pb.GetEnforcingConsecutiveGatewayFailure(), 0),
		EnforcingConsecutiveLocalOriginFailure: u32Or(pb.GetEnforcingConsecutiveLocalOriginFailure(), 100),
		EnforcingSuccessRate:                   u32Or(pb.GetEnforcingSuccessRate(), 100),
		EnforcingLocalOriginSuccessRate:        u32Or(pb.GetEnforcingLocalOriginSuccessRate(), 100),
		EnforcingFailurePercentage:             u32Or(pb.GetEnforcingFailurePercentage(), 0),
		EnforcingFailurePercentageLocalOrigin:  u32Or(pb.GetEnforcingFailurePercentageLocalOrigin(), 0),
		SplitExternalLocalOriginErrors:         pb.GetSplitExternalLocalOriginErrors(),
		Interval:                               durOr(pb.GetInterval(), 10*time.Second),
		BaseEjectionTime:                       durOr(pb.GetBaseEjectionTime(), 30*time.Second),
		MaxEjectionTimeJitter:                  durOr(pb.GetMaxEjectionTimeJitter(), 0),
		MaxEjectionPercent:                     u32Or(pb.GetMaxEjectionPercent(), 10),
		AlwaysEjectOneHost:                     pb.GetAlwaysEjectOneHost().GetValue(),
		SuccessRateMinimumHosts:                u32Or(pb.GetSuccessRateMinimumHosts(), 5),
		SuccessRateRequestVolume:               u32Or(pb.GetSuccessRateRequestVolume(), 100),
		SuccessRateStdevFactor:                 u32Or(pb.GetSuccessRateStdevFactor(), 1900),
		FailurePercentageThreshold:             u32Or(pb.GetFailurePercentageThreshold(), 85),
		FailurePercentageMinimumHosts:          u32Or(pb.GetFailurePercentageMinimumHosts(), 5),
		FailurePercentageRequestVolume:         u32Or(pb.GetFailurePercentageRequestVolume(), 50),
		SuccessfulActiveHealthCheckUnejectHost: true,
	}
	if v := pb.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
		od.SuccessfulActiveHealthCheckUnejectHost = v.GetValue()
	}
	// max_ejection_time defaults to 300s, or base_ejection_time when that
	// is larger.
	od.MaxEjectionTime = Duration(max(300*time.Second, od.BaseEjectionTime.D()))
	if d := pb.GetMaxEjectionTime(); d != nil {
		od.MaxEjectionTime = Duration(d.AsDuration())
	}
	if od.MaxEjectionTime < od.BaseEjectionTime {
		// Envoy's words (DetectorImpl::create).
		return nil, fieldError(joinPath(path, "max_ejection_time"), "outlier detector's max_ejection_time cannot be smaller than base_ejection_time")
	}
	if od.Interval <= 0 {
		return nil, fieldError(joinPath(path, "interval"), "must be greater than 0")
	}
	return od, nil
}
