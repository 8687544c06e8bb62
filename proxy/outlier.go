package proxy

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Outlier detection, as Envoy's Outlier::DetectorImpl: every upstream
// result of a host (response code, connect failure, timeout) is counted
// on the requesting goroutine with atomics; a run of errors reaching its
// consecutive_* threshold ejects the host (FAILED_OUTLIER_CHECK) under
// the detector's lock, unless max_ejection_percent of the cluster is
// ejected already or the enforcing_* draw says no. A timer every
// interval ends ejections that have lasted base_ejection_time × (times
// ejected, backed off and capped at max_ejection_time) plus jitter, and
// runs the success-rate and failure-percentage detectors over the last
// interval's counts.

// outlierResult is a local-origin event, Envoy's Outlier::Result.
type outlierResult int

const (
	// odConnectSuccessFinal: a TCP proxy connected (no protocol above).
	odConnectSuccessFinal outlierResult = iota
	// odConnectFailed: a connect failure or a reset before the response.
	odConnectFailed
	// odTimeout: the request timed out waiting for the response.
	odTimeout
)

// ejection types, named as Envoy's OutlierEjectionType in stats.
const (
	ejConsecutive5xx            = "consecutive_5xx"
	ejConsecutiveGatewayFailure = "consecutive_gateway_failure"
	ejConsecutiveLocalOrigin    = "consecutive_local_origin_failure"
	ejSuccessRate               = "success_rate"
	ejLocalOriginSuccessRate    = "local_origin_success_rate"
	ejFailurePercentage         = "failure_percentage"
	ejLocalFailurePercentage    = "local_origin_failure_percentage"
)

// outlierHost is one host's detector state.
type outlierHost struct {
	c5xx, cGateway, cLocal atomic.Uint32
	// This interval's counts for the success-rate detectors.
	extTotal, extSuccess, localTotal, localSuccess atomic.Uint64

	// Guarded by outlierDetector.mu.
	numEjections   uint32
	backoff        uint64
	lastEjection   time.Time
	lastUnejection time.Time
	jitter         time.Duration
	// successRate and localSuccessRate are the last interval's rates for
	// /clusters; -1 when not computed.
	successRate, localSuccessRate float64
}

type outlierDetector struct {
	c   *cluster
	cfg *config.OutlierDetection

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	active                       *stats.Gauge
	enforcedTotal, overflow      *stats.Counter
	total, successRateDeprecated *stats.Counter
	consecutive5xxDeprecated     *stats.Counter
	enforced, detected           map[string]*stats.Counter
}

func newOutlierDetector(c *cluster) *outlierDetector {
	p := c.stats.prefix + "outlier_detection."
	st := c.stats.store
	d := &outlierDetector{
		c: c, cfg: c.cfg.OutlierDetection,
		active:                   st.Gauge(p + "ejections_active"),
		enforcedTotal:            st.Counter(p + "ejections_enforced_total"),
		overflow:                 st.Counter(p + "ejections_overflow"),
		total:                    st.Counter(p + "ejections_total"),
		successRateDeprecated:    st.Counter(p + "ejections_success_rate"),
		consecutive5xxDeprecated: st.Counter(p + "ejections_consecutive_5xx"),
		enforced:                 map[string]*stats.Counter{},
		detected:                 map[string]*stats.Counter{},
	}
	for _, t := range []string{ejConsecutive5xx, ejConsecutiveGatewayFailure, ejConsecutiveLocalOrigin, ejSuccessRate, ejLocalOriginSuccessRate, ejFailurePercentage, ejLocalFailurePercentage} {
		d.enforced[t] = st.Counter(p + "ejections_enforced_" + t)
		d.detected[t] = st.Counter(p + "ejections_detected_" + t)
	}
	return d
}

// start runs the interval timer until stop.
func (d *outlierDetector) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() {
		defer close(d.done)
		t := time.NewTicker(d.cfg.Interval.D())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				d.onInterval(now)
			}
		}
	}()
}

func (d *outlierDetector) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
	}
}

// httpResult counts an upstream response code (Envoy's
// putHttpResponseCode): 502, 503 and 504 are gateway failures, any 5xx
// counts toward consecutive_5xx, anything else resets both runs. With
// split_external_local_origin_errors, a response also means the
// connection worked (LOCAL_ORIGIN_CONNECT_SUCCESS).
func (d *outlierDetector) httpResult(ep *endpoint, code int) {
	if d.cfg.SplitExternalLocalOriginErrors {
		d.localNoFailure(ep)
	}
	d.putHTTPCode(ep, code)
}

func (d *outlierDetector) putHTTPCode(ep *endpoint, code int) {
	h := &ep.outlier
	h.extTotal.Add(1)
	if code < 500 || code > 599 {
		h.extSuccess.Add(1)
		h.c5xx.Store(0)
		h.cGateway.Store(0)
		return
	}
	if code == 502 || code == 503 || code == 504 {
		if h.cGateway.Add(1) == d.cfg.ConsecutiveGatewayFailure {
			d.onConsecutive(ep, ejConsecutiveGatewayFailure)
		}
	} else {
		h.cGateway.Store(0)
	}
	if h.c5xx.Add(1) == d.cfg.Consecutive5xx {
		d.onConsecutive(ep, ejConsecutive5xx)
	}
}

// localResult counts a local-origin event: without the split it is
// mapped to a response code as Envoy's resultToHttpCode (connect
// failure 503, timeout 504, a TCP connect 200); with it, it feeds the
// consecutive_local_origin_failure run.
func (d *outlierDetector) localResult(ep *endpoint, r outlierResult) {
	if !d.cfg.SplitExternalLocalOriginErrors {
		switch r {
		case odConnectFailed:
			d.putHTTPCode(ep, 503)
		case odTimeout:
			d.putHTTPCode(ep, 504)
		default:
			d.putHTTPCode(ep, 200)
		}
		return
	}
	if r == odConnectSuccessFinal {
		d.localNoFailure(ep)
		return
	}
	h := &ep.outlier
	h.localTotal.Add(1)
	if h.cLocal.Add(1) == d.cfg.ConsecutiveLocalOriginFailure {
		d.onConsecutive(ep, ejConsecutiveLocalOrigin)
	}
}

func (d *outlierDetector) localNoFailure(ep *endpoint) {
	h := &ep.outlier
	h.localTotal.Add(1)
	h.localSuccess.Add(1)
	h.cLocal.Store(0)
}

// onConsecutive is Envoy's onConsecutiveErrorWorker: an ejected host is
// left alone; else the detection is counted, the host maybe ejected,
// and the run that fired starts again.
func (d *outlierDetector) onConsecutive(ep *endpoint, typ string) {
	d.mu.Lock()
	changed := false
	if !ep.failedOutlier.Load() && d.c.hasEndpoint(ep) {
		d.detected[typ].Inc()
		changed = d.ejectLocked(ep, typ, time.Now())
		if typ == ejConsecutive5xx {
			d.consecutive5xxDeprecated.Inc()
		}
	}
	switch typ {
	case ejConsecutive5xx:
		ep.outlier.c5xx.Store(0)
	case ejConsecutiveGatewayFailure:
		ep.outlier.cGateway.Store(0)
	case ejConsecutiveLocalOrigin:
		ep.outlier.cLocal.Store(0)
	}
	d.mu.Unlock()
	if changed {
		d.c.refreshLB()
	}
}

// enforcing is the enforcing_* percentage of an ejection type.
func (d *outlierDetector) enforcing(typ string) uint32 {
	switch typ {
	case ejConsecutive5xx:
		return d.cfg.EnforcingConsecutive5xx
	case ejConsecutiveGatewayFailure:
		return d.cfg.EnforcingConsecutiveGatewayFailure
	case ejConsecutiveLocalOrigin:
		return d.cfg.EnforcingConsecutiveLocalOriginFailure
	case ejSuccessRate:
		return d.cfg.EnforcingSuccessRate
	case ejLocalOriginSuccessRate:
		return d.cfg.EnforcingLocalOriginSuccessRate
	case ejFailurePercentage:
		return d.cfg.EnforcingFailurePercentage
	default:
		return d.cfg.EnforcingFailurePercentageLocalOrigin
	}
}

// ejectLocked is Envoy's ejectHost: past max_ejection_percent (counting
// this host) nothing is ejected (ejections_overflow) unless
// always_eject_one_host and none is; the enforcing_* percentage decides
// whether a detection ejects. True when the host was ejected.
func (d *outlierDetector) ejectLocked(ep *endpoint, typ string, now time.Time) bool {
	hosts := d.c.snapshotEndpoints()
	ejected := 0
	for _, h := range hosts {
		if h.failedOutlier.Load() {
			ejected++
		}
	}
	maxPct := float64(min(d.cfg.MaxEjectionPercent, 100))
	should := 100*float64(ejected+1)/float64(len(hosts)) <= maxPct
	if d.cfg.AlwaysEjectOneHost && ejected == 0 {
		should = true
	}
	if !should {
		d.overflow.Inc()
		return false
	}
	if typ == ejConsecutive5xx || typ == ejSuccessRate {
		d.total.Inc() // deprecated, kept as Envoy keeps it
	}
	if uint32(rand.IntN(100)) >= d.enforcing(typ) {
		return false
	}
	d.enforcedTotal.Inc()
	d.enforced[typ].Inc()
	h := &ep.outlier
	ep.failedOutlier.Store(true)
	h.numEjections++
	h.lastEjection = now
	h.jitter = time.Duration(rand.Int64N(int64(d.cfg.MaxEjectionTimeJitter) + 1))
	base, maxT := d.cfg.BaseEjectionTime.D(), d.cfg.MaxEjectionTime.D()
	if time.Duration(h.backoff)*base < maxT+base {
		h.backoff++
	}
	d.active.Set(int64(ejected + 1))
	d.c.log.Info("outlier detection ejected a host", "cluster", d.c.cfg.Name, "host", ep.address, "type", typ)
	return true
}

// unejectLocked returns an ejected host to load balancing with fresh
// consecutive counts.
func (d *outlierDetector) unejectLocked(ep *endpoint, now time.Time) {
	ep.failedOutlier.Store(false)
	h := &ep.outlier
	h.c5xx.Store(0)
	h.cGateway.Store(0)
	h.cLocal.Store(0)
	h.lastUnejection = now
}

// healthCheckPassed ends an ejection when an active check passes
// (successful_active_health_check_uneject_host).
func (d *outlierDetector) healthCheckPassed(ep *endpoint) {
	if !d.cfg.SuccessfulActiveHealthCheckUnejectHost || !ep.failedOutlier.Load() || ep.failedActiveHC.Load() {
		return
	}
	d.mu.Lock()
	if ep.failedOutlier.Load() {
		d.unejectLocked(ep, time.Now())
		d.refreshActiveLocked()
	}
	d.mu.Unlock()
	d.c.refreshLB()
}

func (d *outlierDetector) refreshActiveLocked() {
	n := 0
	for _, h := range d.c.snapshotEndpoints() {
		if h.failedOutlier.Load() {
			n++
		}
	}
	d.active.Set(int64(n))
}

// onInterval is Envoy's onIntervalTimer.
func (d *outlierDetector) onInterval(now time.Time) {
	hosts := d.c.snapshotEndpoints()
	d.mu.Lock()
	base, maxT := d.cfg.BaseEjectionTime.D(), d.cfg.MaxEjectionTime.D()
	type counts struct{ ext, extOK, local, localOK uint64 }
	got := make([]counts, len(hosts))
	for i, ep := range hosts {
		h := &ep.outlier
		if ep.failedOutlier.Load() {
			if min(time.Duration(h.backoff)*base, maxT)+h.jitter <= now.Sub(h.lastEjection) {
				d.unejectLocked(ep, now)
			}
		}
		got[i] = counts{h.extTotal.Swap(0), h.extSuccess.Swap(0), h.localTotal.Swap(0), h.localSuccess.Swap(0)}
		h.successRate, h.localSuccessRate = -1, -1
	}
	ext := make([]rateSample, len(hosts))
	local := make([]rateSample, len(hosts))
	for i := range hosts {
		ext[i] = rateSample{got[i].ext, got[i].extOK}
		local[i] = rateSample{got[i].local, got[i].localOK}
	}
	d.rateEjectionsLocked(hosts, ext, false, now)
	d.rateEjectionsLocked(hosts, local, true, now)
	for _, ep := range hosts {
		h := &ep.outlier
		if !ep.failedOutlier.Load() && !h.lastUnejection.IsZero() && now.Sub(h.lastUnejection) >= d.cfg.Interval.D() && h.backoff > 0 {
			h.backoff--
		}
	}
	d.refreshActiveLocked()
	d.mu.Unlock()
	d.c.refreshLB()
}

type rateSample struct{ total, success uint64 }

// rateEjectionsLocked is Envoy's processSuccessRateEjections over one
// interval's counts (external or local origin).
func (d *outlierDetector) rateEjectionsLocked(hosts []*endpoint, samples []rateSample, localOrigin bool, now time.Time) {
	cfg := d.cfg
	n := uint32(len(hosts))
	if n < cfg.SuccessRateMinimumHosts && n < cfg.FailurePercentageMinimumHosts {
		return
	}
	type hostRate struct {
		ep   *endpoint
		rate float64
	}
	var validSR, validFP []hostRate
	sum := 0.0
	for i, ep := range hosts {
		s := samples[i]
		if ep.failedOutlier.Load() || s.total == 0 {
			continue
		}
		rate := float64(s.success) * 100 / float64(s.total)
		if s.total >= uint64(min(cfg.SuccessRateRequestVolume, cfg.FailurePercentageRequestVolume)) {
			if localOrigin {
				ep.outlier.localSuccessRate = rate
			} else {
				ep.outlier.successRate = rate
			}
		}
		if s.total >= uint64(cfg.SuccessRateRequestVolume) {
			validSR = append(validSR, hostRate{ep, rate})
			sum += rate
		}
		if s.total >= uint64(cfg.FailurePercentageRequestVolume) {
			validFP = append(validFP, hostRate{ep, rate})
		}
	}
	srType, fpType := ejSuccessRate, ejFailurePercentage
	if localOrigin {
		srType, fpType = ejLocalOriginSuccessRate, ejLocalFailurePercentage
	}
	if len(validSR) > 0 && uint32(len(validSR)) >= cfg.SuccessRateMinimumHosts {
		mean := sum / float64(len(validSR))
		variance := 0.0
		for _, h := range validSR {
			variance += (h.rate - mean) * (h.rate - mean)
		}
		variance /= float64(len(validSR))
		threshold := mean - float64(cfg.SuccessRateStdevFactor)/1000*math.Sqrt(variance)
		for _, h := range validSR {
			if h.rate < threshold {
				d.successRateDeprecated.Inc()
				d.detected[srType].Inc()
				d.ejectLocked(h.ep, srType, now)
			}
		}
	}
	if len(validFP) > 0 && uint32(len(validFP)) >= cfg.FailurePercentageMinimumHosts {
		for _, h := range validFP {
			if 100-h.rate >= float64(cfg.FailurePercentageThreshold) && !h.ep.failedOutlier.Load() {
				d.detected[fpType].Inc()
				d.ejectLocked(h.ep, fpType, now)
			}
		}
	}
}

// reportError counts a failed exchange with ep: a timeout of the
// request's own deadline, or a connect failure or reset (Envoy's router
// reports every reset as LOCAL_ORIGIN_CONNECT_FAILED). A circuit
// breaker's overflow and a cancelled request say nothing of the host.
func (c *cluster) reportError(ep *endpoint, err error, timedOut bool) {
	d := c.od
	if d == nil || ep == nil || errors.Is(err, errOverflow) {
		return
	}
	if timedOut {
		d.localResult(ep, odTimeout)
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	d.localResult(ep, odConnectFailed)
}

// reportResponse counts a response code from ep.
func (c *cluster) reportResponse(ep *endpoint, code int) {
	if d := c.od; d != nil && ep != nil {
		d.httpResult(ep, code)
	}
}

// reportConnect counts a TCP proxy's connect result.
func (c *cluster) reportConnect(ep *endpoint, err error) {
	d := c.od
	if d == nil || ep == nil {
		return
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		d.localResult(ep, odConnectFailed)
		return
	}
	d.localResult(ep, odConnectSuccessFinal)
}
