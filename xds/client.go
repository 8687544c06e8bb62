// Package xds is the data-plane side of Envoy's discovery services over
// a gRPC stream — the aggregated one (ADS), or one type's own service
// (an api_config_source: Options.OwnService) — state of the world or
// incremental (delta):
// it subscribes to resource types in order, hands each response to a
// Handler and answers it with an ACK (the version it accepted) or a NACK
// (the version it keeps, and error_detail saying why), and reconnects
// with jittered exponential backoff when the stream breaks.
//
// The client is small and our own rather than go-control-plane's: that
// module's client (pkg/client/sotw) applies nothing itself and cannot
// express Envoy's ordering (LDS is requested only once the first CDS
// response is applied, so a listener never names a cluster the proxy has
// not built), which is the part that matters here.
package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/grpcstream"
)

// Type URLs of the resources the client subscribes to.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	// ExtensionConfigType is ECDS: an HTTP filter's config_discovery.
	ExtensionConfigType = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
	// SecretType is SDS: TLS certificates and validation contexts.
	SecretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// Handler applies the resources of one response: the whole state of the
// world of typeURL at version. A nil error ACKs the response; an error
// NACKs it, and its text goes to the control plane as error_detail. It
// is called from the client's goroutine, one response at a time.
type Handler func(ctx context.Context, typeURL, version string, resources []*anypb.Any) error

// Options configure Run.
type Options struct {
	// Upstreams and Cluster reach the control plane: the stream goes
	// through the proxy's cluster (Envoy's envoy_grpc), with its
	// endpoints, TLS and HTTP/2 settings.
	Upstreams filter.Upstreams
	Cluster   string
	// Delta selects the incremental protocol (DELTA_GRPC) instead of the
	// state of the world (GRPC). The Handler sees whole states either way.
	Delta bool
	// OwnService: the stream is the discovery service of its one type
	// (an api_config_source: ClusterDiscoveryService/StreamClusters, …),
	// not ADS; Types then has one entry.
	OwnService bool
	// Wake, if set, tells the stream that Names may have changed for a
	// reason of its own (another stream's or a file's update): the
	// subscribed types' names are asked again, and a change is sent.
	Wake <-chan struct{}
	// Node identifies this proxy; it is sent on every request, or on
	// the first of each stream with SetNodeOnFirstMessageOnly.
	Node                      *corev3.Node
	SetNodeOnFirstMessageOnly bool
	// Types are subscribed in this order, each once the previous one
	// had its first response applied (Envoy: CDS, EDS, LDS, RDS) — but
	// for the named types after the last wildcard one, asked for
	// together (see advance).
	Types   []string
	Handler Handler
	// Names, if set, gives the resource names a type subscribes to; a
	// nil result means the whole type (wildcard: CDS, LDS). A named type
	// (EDS, RDS) with no names yet is skipped in the order and
	// subscribed when names appear; the names are asked again after
	// every applied response, and a change is sent as a new request.
	Names func(typeURL string) []string
	// Initialized, if set, is called once, when every type in Types
	// had its first response (applied or not), was skipped for having
	// no names, or is a named type after the last wildcard one (asked
	// for, not waited for: what waits on it warms): Envoy's end of
	// initialization.
	Initialized func()
	// Connected, if set, learns the stream's state (Envoy's
	// control_plane.connected_state).
	Connected func(bool)
	Logger    *slog.Logger
	// BackoffBase and BackoffMax bound the reconnection delay (Envoy's
	// defaults 500ms and 30s when zero).
	BackoffBase, BackoffMax time.Duration
}

// Run keeps a stream to the control plane until ctx ends: on a broken
// stream it reconnects after a jittered, doubling delay (reset once a
// stream has delivered a response), resubscribing with the versions it
// had accepted, so an unchanged control plane sends nothing new.
func Run(ctx context.Context, opts Options) error {
	if opts.Handler == nil || len(opts.Types) == 0 || opts.Upstreams == nil || opts.Cluster == "" {
		return errors.New("xds: Options need Upstreams, a Cluster, Types and a Handler")
	}
	if opts.OwnService && (len(opts.Types) != 1 || services[opts.Types[0]] == "") {
		return fmt.Errorf("xds: a stream of its own service carries one known type, not %v", opts.Types)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 500 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	c := &client{opts: opts, initialized: opts.Initialized,
		accepted: map[string]string{}, known: map[string]map[string]*discoveryv3.Resource{}}
	delay := opts.BackoffBase
	for {
		progressed, err := c.stream(ctx)
		if opts.Connected != nil {
			opts.Connected(false)
		}
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			delay = opts.BackoffBase
		}
		// Full jitter, as Envoy's JitteredExponentialBackOffStrategy.
		wait := time.Duration(rand.Int64N(int64(delay)) + 1)
		opts.Logger.Warn("xDS stream closed; reconnecting", "cluster", opts.Cluster, "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		delay = min(2*delay, opts.BackoffMax)
	}
}

// The ADS methods.
const (
	sotwMethod  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// services are, by type, the discovery service of that type alone and
// the suffix of its methods (Stream<suffix>, Delta<suffix>), which an
// api_config_source's stream calls.
var services = map[string]string{
	ClusterType:         "envoy.service.cluster.v3.ClusterDiscoveryService/%sClusters",
	EndpointType:        "envoy.service.endpoint.v3.EndpointDiscoveryService/%sEndpoints",
	ListenerType:        "envoy.service.listener.v3.ListenerDiscoveryService/%sListeners",
	RouteType:           "envoy.service.route.v3.RouteDiscoveryService/%sRoutes",
	ExtensionConfigType: "envoy.service.extension.v3.ExtensionConfigDiscoveryService/%sExtensionConfigs",
	SecretType:          "envoy.service.secret.v3.SecretDiscoveryService/%sSecrets",
}

// method is the gRPC method of a stream with opts.
func method(opts *Options) string {
	switch {
	case opts.OwnService && opts.Delta:
		return "/" + fmt.Sprintf(services[opts.Types[0]], "Delta")
	case opts.OwnService:
		return "/" + fmt.Sprintf(services[opts.Types[0]], "Stream")
	case opts.Delta:
		return deltaMethod
	}
	return sotwMethod
}

type client struct {
	opts Options
	// accepted is the last version ACKed per type, kept across streams.
	accepted map[string]string
	// known is, for the incremental protocol, the accepted resources
	// per type and name, kept across streams (initial_resource_versions).
	known map[string]map[string]*discoveryv3.Resource
	// initialized is Options.Initialized until it has been called.
	initialized func()
}

// update is one response of either protocol, as the whole state of its
// type.
type update struct {
	typeURL, version, nonce string
	resources               []*anypb.Any
	// delta: the type's resources by name once this update is accepted.
	next map[string]*discoveryv3.Resource
}

// wire is one stream of the state-of-the-world or the incremental
// protocol; the subscription order, ACK/NACK and backoff above it are
// the same for both.
type wire interface {
	// request subscribes typeURL to names (nil: the whole type), or
	// changes the names of a subscribed type.
	request(typeURL string, names []string) error
	// read receives the next response; it runs on a goroutine of its
	// own and touches nothing but the stream.
	read() (proto.Message, error)
	// update turns a response read into the type's whole state.
	update(proto.Message) *update
	// reply ACKs u (nack nil) or NACKs it.
	reply(u *update, nack error) error
}

// stream runs one ADS stream until it breaks; progressed reports
// whether it delivered any response.
func (c *client) stream(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := grpcstream.Open(ctx, c.opts.Upstreams, c.opts.Cluster, grpcstream.Headers(c.opts.Cluster, method(&c.opts)))
	if err != nil {
		return false, err
	}
	defer s.Close()
	m := msgStream{s}
	var w wire
	if c.opts.Delta {
		w = &deltaWire{c: c, s: m, sent: map[string][]string{}, first: true}
	} else {
		w = &sotwWire{c: c, s: m, nonce: map[string]string{}, first: true}
	}
	// A control plane that answers a NACK with the same version again
	// (go-control-plane's snapshot cache does) would spin the two of us:
	// a version NACKed again is answered after a doubling delay.
	lastNACK := map[string]string{}
	nackDelay := map[string]time.Duration{}
	sent := map[string][]string{} // names of each subscribed type
	names := func(t string) []string {
		if c.opts.Names == nil {
			return nil
		}
		return c.opts.Names(t)
	}
	request := func(t string, n []string) error {
		sent[t] = n
		return w.request(t, n)
	}
	// next is the index in Types of the next type to subscribe; waiting
	// is the type whose first response holds the order up ("" if none).
	next, waiting := 0, ""
	advance := func() error {
		defer func() {
			if waiting == "" && next == len(c.opts.Types) && c.initialized != nil {
				c.initialized()
				c.initialized = nil
			}
		}()
		for waiting == "" && next < len(c.opts.Types) {
			t := c.opts.Types[next]
			next++
			n := names(t)
			if n != nil && len(n) == 0 {
				continue // named, with no names yet: see refresh
			}
			if err := request(t, n); err != nil {
				return err
			}
			// A named type holds the order only for a wildcard type after
			// it (EDS before LDS: Envoy asks for listeners once its
			// clusters initialized). The named types after the last
			// wildcard one are asked for together, as Envoy's mux sends
			// each subscription at once, so one whose resource never
			// comes (an ECDS config, a secret: each bounded by its own
			// initial_fetch_timeout) keeps no other from being asked for.
			if n == nil || slices.ContainsFunc(c.opts.Types[next:], wildcard) {
				waiting = t
			}
		}
		return nil
	}
	// refresh re-sends the subscription of a named type whose names
	// changed (or that had none), among the types already reached.
	refresh := func() error {
		for _, t := range c.opts.Types[:next] {
			n := names(t)
			if n == nil || len(n) == 0 || slices.Equal(n, sent[t]) {
				continue
			}
			if err := request(t, n); err != nil {
				return err
			}
		}
		return nil
	}
	if err := advance(); err != nil {
		return false, err
	}
	if c.opts.Connected != nil {
		c.opts.Connected(true)
	}
	// Responses are read on a goroutine of their own, so that a wake
	// (names changed elsewhere) is answered while no response comes.
	type read struct {
		msg proto.Message
		err error
	}
	reads := make(chan read)
	go func() {
		for {
			msg, err := w.read()
			select {
			case reads <- read{msg, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var rd read
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-c.opts.Wake:
			if err := refresh(); err != nil {
				return progressed, err
			}
			continue
		case rd = <-reads:
		}
		if rd.err == io.EOF {
			return progressed, errors.New("the control plane closed the stream")
		}
		if rd.err != nil {
			return progressed, rd.err
		}
		u := w.update(rd.msg)
		progressed = true
		t := u.typeURL
		nack := c.opts.Handler(ctx, t, u.version, u.resources)
		if nack != nil {
			c.opts.Logger.Warn("xDS update rejected", "type", t, "version", u.version, "err", nack)
			if lastNACK[t] == u.version {
				select {
				case <-ctx.Done():
					return progressed, ctx.Err()
				case <-time.After(nackDelay[t]):
				}
				nackDelay[t] = min(2*nackDelay[t], c.opts.BackoffMax)
			} else {
				lastNACK[t], nackDelay[t] = u.version, c.opts.BackoffBase
			}
		} else {
			c.opts.Logger.Info("xDS update applied", "type", t, "version", u.version, "resources", len(u.resources))
			c.accepted[t] = u.version
			delete(lastNACK, t)
		}
		if err := w.reply(u, nack); err != nil {
			return progressed, err
		}
		// The next type once this one had its first response, applied
		// or not (Envoy's init: a rejected CDS still lets LDS proceed).
		if t == waiting {
			waiting = ""
			if err := advance(); err != nil {
				return progressed, err
			}
		}
		if err := refresh(); err != nil {
			return progressed, err
		}
	}
}

// wildcard reports whether typeURL is subscribed as a whole (CDS, LDS).
func wildcard(typeURL string) bool { return typeURL == ClusterType || typeURL == ListenerType }

func nackStatus(err error) *statuspb.Status {
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// sotwWire is the state-of-the-world protocol (api_type GRPC).
type sotwWire struct {
	c     *client
	s     msgStream
	nonce map[string]string
	first bool
}

func (w *sotwWire) send(req *discoveryv3.DiscoveryRequest) error {
	if w.first || !w.c.opts.SetNodeOnFirstMessageOnly {
		req.Node = w.c.opts.Node
	}
	w.first = false
	return w.s.Send(req)
}

func (w *sotwWire) request(t string, names []string) error {
	return w.send(&discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: w.c.accepted[t], ResponseNonce: w.nonce[t], ResourceNames: names})
}

func (w *sotwWire) read() (proto.Message, error) {
	resp := &discoveryv3.DiscoveryResponse{}
	if err := w.s.Recv(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (w *sotwWire) update(msg proto.Message) *update {
	resp := msg.(*discoveryv3.DiscoveryResponse)
	w.nonce[resp.GetTypeUrl()] = resp.GetNonce()
	return &update{typeURL: resp.GetTypeUrl(), version: resp.GetVersionInfo(), nonce: resp.GetNonce(), resources: resp.GetResources()}
}

func (w *sotwWire) reply(u *update, nack error) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: u.typeURL, ResponseNonce: u.nonce, VersionInfo: w.c.accepted[u.typeURL]}
	if nack != nil {
		req.ErrorDetail = nackStatus(nack)
	}
	return w.send(req)
}

// deltaWire is the incremental protocol (api_type DELTA_GRPC): responses
// carry the resources that changed and the names removed; the wire keeps
// each type's accepted resources and hands the Handler the whole state.
type deltaWire struct {
	c     *client
	s     msgStream
	sent  map[string][]string // names subscribed per type on this stream
	first bool
}

func (w *deltaWire) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if w.first || !w.c.opts.SetNodeOnFirstMessageOnly {
		req.Node = w.c.opts.Node
	}
	w.first = false
	return w.s.Send(req)
}

func (w *deltaWire) request(t string, names []string) error {
	old, subscribed := w.sent[t]
	w.sent[t] = names
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t}
	if !subscribed {
		// The first request of a type on this stream: what the client
		// already has, so that an unchanged server sends nothing again.
		req.InitialResourceVersions = map[string]string{}
		for name, r := range w.c.known[t] {
			req.InitialResourceVersions[name] = r.GetVersion()
		}
		req.ResourceNamesSubscribe = names // none: the whole type (wildcard)
		return w.send(req)
	}
	for _, n := range names {
		if !slices.Contains(old, n) {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		}
	}
	for _, n := range old {
		if !slices.Contains(names, n) {
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	return w.send(req)
}

func (w *deltaWire) read() (proto.Message, error) {
	resp := &discoveryv3.DeltaDiscoveryResponse{}
	if err := w.s.Recv(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (w *deltaWire) update(msg proto.Message) *update {
	resp := msg.(*discoveryv3.DeltaDiscoveryResponse)
	t := resp.GetTypeUrl()
	next := map[string]*discoveryv3.Resource{}
	for name, r := range w.c.known[t] {
		next[name] = r
	}
	for _, r := range resp.GetResources() {
		next[r.GetName()] = r
	}
	for _, name := range resp.GetRemovedResources() {
		delete(next, name)
	}
	names := make([]string, 0, len(next))
	for name := range next {
		names = append(names, name)
	}
	slices.Sort(names)
	u := &update{typeURL: t, version: resp.GetSystemVersionInfo(), nonce: resp.GetNonce(), next: next}
	for _, name := range names {
		u.resources = append(u.resources, next[name].GetResource())
	}
	return u
}

func (w *deltaWire) reply(u *update, nack error) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: u.typeURL, ResponseNonce: u.nonce}
	if nack != nil {
		req.ErrorDetail = nackStatus(nack)
	} else {
		w.c.known[u.typeURL] = u.next
	}
	return w.send(req)
}

// msgStream carries protobuf messages on a gRPC call.
type msgStream struct{ s *grpcstream.Stream }

func (m msgStream) Send(msg proto.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	return m.s.Send(b)
}

func (m msgStream) Recv(msg proto.Message) error {
	b, err := m.s.Recv()
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, msg); err != nil {
		return fmt.Errorf("decoding %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
