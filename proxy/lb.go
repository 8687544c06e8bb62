package proxy

import (
	"math"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// Load balancing as Envoy's LoadBalancerBase and its policies. Hosts are
// grouped by priority; each priority's health (the share of its hosts
// that are healthy, × the overprovisioning factor 1.4, capped at 100%)
// decides how much of the traffic it takes, the rest spilling to the
// next priorities. When the priorities together are under 100%, a
// priority whose healthy share is below healthy_panic_threshold panics
// and uses all its hosts; with no healthy host anywhere, priority 0
// takes everything, in panic. Within a priority the cluster's policy
// picks, over the host weights. Every structure here is rebuilt on a
// membership or health change (refreshLBLocked) and only read per pick.

// overprovisioningFactor is Envoy's default, 140 (1.4).
const overprovisioningFactor = 140

// lbState is one snapshot of the load balancer.
type lbState struct {
	prios []*prioSet
	// loads[i] is the share (percent, summing to 100) of traffic priority
	// i takes.
	loads []uint32
}

// prioSet is one priority's hosts as load balancing uses them.
type prioSet struct {
	hosts   []*endpoint // healthy ones, or all in panic
	weights []uint32
	panic   bool
	// equal: every weight is the same (plain round robin, P2C).
	equal bool

	wrrMu   sync.Mutex
	current []int64 // smooth weighted round robin

	ring   []ringEntry // RING_HASH
	maglev []*endpoint // MAGLEV
}

type ringEntry struct {
	hash uint64
	ep   *endpoint
}

// buildLBState computes the snapshot from the cluster's hosts.
func buildLBState(cfg *config.Cluster, eps []*endpoint) *lbState {
	byPrio := map[uint32][]*endpoint{}
	var prios []uint32
	for _, ep := range eps {
		if _, ok := byPrio[ep.priority]; !ok {
			prios = append(prios, ep.priority)
		}
		byPrio[ep.priority] = append(byPrio[ep.priority], ep)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	st := &lbState{}
	if len(prios) == 0 {
		return st
	}
	// Envoy's priority levels are dense from 0: a missing level is an
	// empty host set, which takes no load.
	maxP := prios[len(prios)-1]
	health := make([]uint32, maxP+1)
	healthyPct := make([]float64, maxP+1)
	total := uint32(0)
	for p := uint32(0); p <= maxP; p++ {
		all := byPrio[p]
		if len(all) == 0 {
			continue
		}
		n := 0
		for _, ep := range all {
			if ep.healthy() {
				n++
			}
		}
		health[p] = min(100, uint32(overprovisioningFactor*n/len(all)))
		healthyPct[p] = 100 * float64(n) / float64(len(all))
		total += health[p]
	}
	avail := min(total, 100)
	st.loads = make([]uint32, maxP+1)
	panicAt := func(p uint32) bool {
		return len(byPrio[p]) > 0 && healthyPct[p] < cfg.PanicThreshold()
	}
	inPanic := make([]bool, maxP+1)
	if avail == 0 {
		st.loads[0] = 100
		inPanic[0] = panicAt(0)
	} else {
		remaining := uint32(100)
		for p := range health {
			st.loads[p] = min(remaining, health[p]*100/avail)
			remaining -= st.loads[p]
		}
		for p := range health { // rounding leftovers go to the first level with health
			if remaining > 0 && health[p] > 0 {
				st.loads[p] += remaining
				remaining = 0
			}
		}
		if avail < 100 {
			for p := range health {
				inPanic[p] = panicAt(uint32(p))
			}
		}
	}
	for p := uint32(0); p <= maxP; p++ {
		ps := &prioSet{panic: inPanic[p]}
		for _, ep := range byPrio[p] {
			if ps.panic || ep.healthy() {
				ps.hosts = append(ps.hosts, ep)
				ps.weights = append(ps.weights, ep.weight)
			}
		}
		ps.equal = true
		for _, w := range ps.weights {
			if w != ps.weights[0] {
				ps.equal = false
			}
		}
		ps.current = make([]int64, len(ps.hosts))
		switch cfg.LBPolicy {
		case config.LBRingHash:
			ps.ring = buildRing(cfg.LB, ps.hosts, ps.weights)
		case config.LBMaglev:
			ps.maglev = buildMaglev(cfg.LB.TableSize(), ps.hosts, ps.weights)
		}
		st.prios = append(st.prios, ps)
	}
	return st
}

// inPanic reports that some priority with load is in panic.
func (st *lbState) inPanic(p int) bool { return st.prios[p].panic }

// choosePriority is Envoy's choosePriority: the level whose cumulative
// load holds h % 100.
func (st *lbState) choosePriority(h uint64) int {
	x := uint32(h % 100)
	cum := uint32(0)
	for i, l := range st.loads {
		cum += l
		if x < cum {
			return i
		}
	}
	return 0
}

// pickIn chooses a host of one priority by the cluster's policy.
func (ps *prioSet) pickIn(c *cluster, hash uint64, hasHash bool) *endpoint {
	n := len(ps.hosts)
	switch {
	case n == 0:
		return nil
	case n == 1:
		return ps.hosts[0]
	}
	switch c.cfg.LBPolicy {
	case config.LBRandom:
		return ps.hosts[rand.IntN(n)]
	case config.LBLeastRequest:
		if ps.equal {
			// Envoy's choice_count sampling: the fewest active requests
			// among choice_count random hosts, the first drawn on ties.
			best := ps.hosts[rand.IntN(n)]
			for i := 1; i < c.cfg.LB.Choices(); i++ {
				if h := ps.hosts[rand.IntN(n)]; h.active.Load() < best.active.Load() {
					best = h
				}
			}
			return best
		}
		// Weighted: Envoy schedules by weight / (active + 1); drawn here
		// at random in proportion to that.
		eff := make([]float64, n)
		sum := 0.0
		for i, h := range ps.hosts {
			eff[i] = float64(ps.weights[i]) / float64(h.active.Load()+1)
			sum += eff[i]
		}
		x := rand.Float64() * sum
		for i := range eff {
			if x -= eff[i]; x < 0 {
				return ps.hosts[i]
			}
		}
		return ps.hosts[n-1]
	case config.LBRingHash:
		if !hasHash {
			hash = rand.Uint64()
		}
		i := sort.Search(len(ps.ring), func(i int) bool { return ps.ring[i].hash >= hash })
		if i == len(ps.ring) {
			i = 0
		}
		return ps.ring[i].ep
	case config.LBMaglev:
		if !hasHash {
			hash = rand.Uint64()
		}
		return ps.maglev[hash%uint64(len(ps.maglev))]
	default: // ROUND_ROBIN
		if ps.equal {
			return ps.hosts[int(c.rr.Add(1)-1)%n]
		}
		// Smooth weighted round robin: each host's turns in proportion
		// to its weight, interleaved (Envoy's EDF scheduler gives the
		// same shares).
		ps.wrrMu.Lock()
		defer ps.wrrMu.Unlock()
		total, best := int64(0), 0
		for i, w := range ps.weights {
			ps.current[i] += int64(w)
			total += int64(w)
			if ps.current[i] > ps.current[best] {
				best = i
			}
		}
		ps.current[best] -= total
		return ps.hosts[best]
	}
}

// buildRing is Envoy's RingHashLoadBalancer::Ring: each host gets ring
// entries in proportion to its weight, hashed with xxHash64 from
// "<address>_<n>", the ring scaled so the lightest host has at least
// one entry per its share of minimum_ring_size, capped at
// maximum_ring_size.
func buildRing(lb *config.LBConfig, hosts []*endpoint, weights []uint32) []ringEntry {
	if len(hosts) == 0 {
		return nil
	}
	minSize, maxSize := lb.RingSizes()
	sum := 0.0
	for _, w := range weights {
		sum += float64(w)
	}
	minNorm := 1.0
	for _, w := range weights {
		minNorm = math.Min(minNorm, float64(w)/sum)
	}
	scale := math.Min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	ring := make([]ringEntry, 0, int(math.Ceil(scale)))
	current, target := 0.0, 0.0
	for i, h := range hosts {
		target += scale * float64(weights[i]) / sum
		for n := 0; current < target; n++ {
			ring = append(ring, ringEntry{xxhash.Sum64String(h.address + "_" + strconv.Itoa(n)), h})
			current++
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].hash < ring[j].hash })
	return ring
}

// buildMaglev is Envoy's MaglevTable: each host walks its permutation
// (offset xxHash64(address) mod M, skip xxHash64(address, seed 1) mod
// (M-1) + 1) taking free slots, a host of weight w taking a turn in the
// iterations where iteration × w reaches its next target (steps of the
// largest weight).
func buildMaglev(m uint64, hosts []*endpoint, weights []uint32) []*endpoint {
	if len(hosts) == 0 {
		return nil
	}
	type entry struct {
		ep                 *endpoint
		offset, skip, next uint64
		weight, target     float64
	}
	sum, maxW := 0.0, 0.0
	for _, w := range weights {
		sum += float64(w)
	}
	entries := make([]*entry, len(hosts))
	for i, h := range hosts {
		d := xxhash.NewWithSeed(1)
		d.WriteString(h.address)
		nw := float64(weights[i]) / sum
		maxW = math.Max(maxW, nw)
		entries[i] = &entry{ep: h, offset: xxhash.Sum64String(h.address) % m, skip: d.Sum64()%(m-1) + 1, weight: nw}
	}
	table := make([]*endpoint, m)
	filled := uint64(0)
	for iteration := 1.0; filled < m; iteration++ {
		for _, e := range entries {
			if filled >= m {
				break
			}
			if iteration*e.weight < e.target {
				continue
			}
			e.target += maxW
			c := (e.offset + e.skip*e.next) % m
			for table[c] != nil {
				e.next++
				c = (e.offset + e.skip*e.next) % m
			}
			table[c] = e.ep
			e.next++
			filled++
		}
	}
	return table
}

// requestHash is Envoy's HashPolicyImpl::generateHash over a route's
// hash_policy: each policy's xxHash64 folded in (the previous value
// rotated left by one, then xor), stopping after a terminal policy that
// produced one. setCookie is a Set-Cookie value for the response when a
// cookie policy with a ttl generated the cookie.
func requestHash(policies []config.HashPolicy, h *filter.HeaderMap, info *filter.StreamInfo) (hash uint64, ok bool, setCookie string) {
	for _, p := range policies {
		var v uint64
		got := false
		switch {
		case p.Header != "":
			var vals []string
			for _, pr := range h.Pairs() {
				if strings.EqualFold(pr.Key, p.Header) {
					vals = append(vals, pr.Value)
				}
			}
			if len(vals) == 1 {
				v, got = xxhash.Sum64String(vals[0]), true
			} else if len(vals) > 1 {
				sort.Strings(vals) // the same hash whatever the order
				d := xxhash.New()
				for _, s := range vals {
					d.WriteString(s)
				}
				v, got = d.Sum64(), true
			}
		case p.Cookie != nil:
			if val, found := requestCookie(h, p.Cookie.Name); found {
				v, got = xxhash.Sum64String(val), true
			} else if p.Cookie.TTL != nil {
				// Envoy's router makes the value from the connection's
				// addresses, so a client keeps it across requests.
				val := strconv.FormatUint(xxhash.Sum64String(info.DownstreamAddr.String()+info.LocalAddr.String()), 16)
				val = strings.Repeat("0", 16-len(val)) + val
				setCookie = makeSetCookie(p.Cookie, val)
				v, got = xxhash.Sum64String(val), true
			}
		case p.SourceIP:
			if info.DownstreamAddr.IsValid() {
				v, got = xxhash.Sum64String(info.DownstreamAddr.Addr().String()), true
			}
		case p.QueryParameter != "":
			path, _ := h.Get(":path")
			if _, q, found := strings.Cut(path, "?"); found {
				if vals, err := url.ParseQuery(q); err == nil || len(vals) > 0 {
					if vs, found := vals[p.QueryParameter]; found && len(vs) > 0 {
						v, got = xxhash.Sum64String(vs[0]), true
					}
				}
			}
		}
		if got {
			old := uint64(0)
			if ok {
				old = hash<<1 | hash>>63
			}
			hash, ok = old^v, true
		}
		if p.Terminal && ok {
			break
		}
	}
	return hash, ok, setCookie
}

// requestCookie finds a cookie's value in the request's cookie headers.
func requestCookie(h *filter.HeaderMap, name string) (string, bool) {
	for _, p := range h.Pairs() {
		if !strings.EqualFold(p.Key, "cookie") {
			continue
		}
		for _, part := range strings.Split(p.Value, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if k == name {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

// makeSetCookie is Envoy's Http::Utility::makeSetCookieValue: the value
// quoted, Max-Age from the ttl (when not zero), Path, the attributes,
// HttpOnly.
func makeSetCookie(c *config.CookieHash, value string) string {
	var b strings.Builder
	b.WriteString(c.Name + `="` + value + `"`)
	if secs := int64(c.TTL.D().Seconds()); secs != 0 {
		b.WriteString("; Max-Age=" + strconv.FormatInt(secs, 10))
	}
	if c.Path != "" {
		b.WriteString("; Path=" + c.Path)
	}
	for _, a := range c.Attributes {
		b.WriteString("; " + a.Name)
		if a.Value != "" {
			b.WriteString("=" + a.Value)
		}
	}
	b.WriteString("; HttpOnly")
	return b.String()
}
