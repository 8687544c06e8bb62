// Package headermutation is envoy.filters.http.header_mutation: request
// and response header mutations in the filter chain, with Envoy's
// semantics restated from source/extensions/filters/http/header_mutation/
// and its proto's documentation:
//
//   - Each mutation is applied in order: remove a header, remove every
//     header whose name a matcher matches (remove_on_match), or append a
//     HeaderValueOption whose value is a format string rendered by the
//     same formatter the router's header mutations use (%REQ(x)%,
//     %DOWNSTREAM_REMOTE_ADDRESS%, ...; an empty value is skipped unless
//     keep_empty_value) under its append_action.
//   - The filter's mutations apply first, then those of
//     typed_per_filter_config (HeaderMutationPerRoute): by default the
//     route's, then the virtual host's, so the less specific one has the
//     last word; most_specific_header_mutations_wins reverses that.
//   - Request mutations run when the request headers pass the filter,
//     response mutations when the response headers do.
//
// parameter_mutations, trailer mutations and custom formatters are not
// supported (refused by name).
package headermutation

import (
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	hmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.header_mutation"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// Mutation is one mutation_rules.v3.HeaderMutation: Remove (a name),
// RemoveMatching, or Append.
type Mutation struct {
	Remove         string                    `json:"remove,omitempty"`
	RemoveMatching *config.StringMatcher     `json:"remove_on_match,omitempty"`
	Append         *config.HeaderValueOption `json:"append,omitempty"`
}

// Mutations is a Mutations message.
type Mutations struct {
	Request  []Mutation `json:"request_mutations,omitempty"`
	Response []Mutation `json:"response_mutations,omitempty"`
}

// Config is the filter's HeaderMutation.
type Config struct {
	Mutations                       Mutations `json:"mutations"`
	MostSpecificHeaderMutationsWins bool      `json:"most_specific_header_mutations_wins,omitempty"`
}

// PerRoute is a HeaderMutationPerRoute.
type PerRoute struct {
	Mutations Mutations `json:"mutations"`
}

func parse(msg proto.Message, path string) (any, error) {
	if msg == nil {
		return &Config{}, nil
	}
	pb, ok := msg.(*hmv3.HeaderMutation)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.header_mutation.v3.HeaderMutation")
	}
	m, err := buildMutations(pb.GetMutations(), config.JoinPath(path, "mutations"))
	if err != nil {
		return nil, err
	}
	return &Config{Mutations: m, MostSpecificHeaderMutationsWins: pb.GetMostSpecificHeaderMutationsWins()}, nil
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*hmv3.HeaderMutationPerRoute)
	if !ok {
		return nil, config.FieldError(path, "want envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute")
	}
	m, err := buildMutations(pb.GetMutations(), config.JoinPath(path, "mutations"))
	if err != nil {
		return nil, err
	}
	return &PerRoute{Mutations: m}, nil
}

func buildMutations(pb *hmv3.Mutations, path string) (Mutations, error) {
	var m Mutations
	switch {
	case len(pb.GetQueryParameterMutations()) > 0:
		return m, config.NotSupportedError(config.JoinPath(path, "query_parameter_mutations"), "")
	case len(pb.GetRequestTrailersMutations()) > 0:
		return m, config.NotSupportedError(config.JoinPath(path, "request_trailers_mutations"), "")
	case len(pb.GetResponseTrailersMutations()) > 0:
		return m, config.NotSupportedError(config.JoinPath(path, "response_trailers_mutations"), "")
	case len(pb.GetFormatters()) > 0:
		return m, config.NotSupportedError(config.JoinPath(path, "formatters"), "")
	}
	var err error
	if m.Request, err = buildList(pb.GetRequestMutations(), config.JoinPath(path, "request_mutations")); err != nil {
		return m, err
	}
	if m.Response, err = buildList(pb.GetResponseMutations(), config.JoinPath(path, "response_mutations")); err != nil {
		return m, err
	}
	return m, nil
}

func buildList(pbs []*mutationv3.HeaderMutation, path string) ([]Mutation, error) {
	var out []Mutation
	for i, pb := range pbs {
		p := config.IndexPath(path, i)
		var m Mutation
		switch a := pb.GetAction().(type) {
		case *mutationv3.HeaderMutation_Remove:
			if !config.ModifiableHeader(a.Remove) {
				return nil, config.FieldError(config.JoinPath(p, "remove"), ":-prefixed or host headers may not be removed (%q)", a.Remove)
			}
			m.Remove = strings.ToLower(a.Remove)
		case *mutationv3.HeaderMutation_RemoveOnMatch_:
			sm, err := config.BuildStringMatcher(a.RemoveOnMatch.GetKeyMatcher(), config.JoinPath(p, "remove_on_match.key_matcher"))
			if err != nil {
				return nil, err
			}
			m.RemoveMatching = &sm
		case *mutationv3.HeaderMutation_Append:
			o, err := config.BuildHeaderValueOption(a.Append, config.JoinPath(p, "append"))
			if err != nil {
				return nil, err
			}
			m.Append = &o
		default:
			return nil, config.FieldError(p, "missing: remove, append or remove_on_match")
		}
		out = append(out, m)
	}
	return out, nil
}

// apply runs mutations on h in order.
func apply(ms []Mutation, h *filter.HeaderMap, e *accesslog.Entry) {
	for i := range ms {
		m := &ms[i]
		switch {
		case m.Remove != "":
			h.Del(m.Remove)
		case m.RemoveMatching != nil:
			var drop []string
			for _, p := range h.Pairs() {
				if p.Key != "" && p.Key[0] != ':' && !strings.EqualFold(p.Key, "host") && m.RemoveMatching.Match(p.Key) {
					drop = append(drop, p.Key)
				}
			}
			for _, k := range drop {
				h.Del(k)
			}
		case m.Append != nil:
			o := m.Append
			v := o.Render(e)
			if v == "" && !o.KeepEmptyValue {
				continue
			}
			_, exists := h.Get(o.Key)
			switch o.Action {
			case config.AddIfAbsent:
				if !exists {
					h.Add(o.Key, v)
				}
			case config.OverwriteIfExists:
				if exists {
					h.Set(o.Key, v)
				}
			case config.OverwriteIfExistsOrAdd:
				h.Set(o.Key, v)
			default:
				h.Add(o.Key, v)
			}
		}
	}
}

type factory struct {
	name string
	cfg  *Config
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config)}, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
	// levels are the per-route mutations in the order they apply; found
	// once, at the request headers (the route the stream started on).
	levels [2]*Mutations
	n      int
}

func (s *stream) loadLevels() {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	order := [2]any{route, vhost}
	if s.f.cfg.MostSpecificHeaderMutationsWins {
		order = [2]any{vhost, route}
	}
	for _, c := range order {
		if p, ok := c.(*PerRoute); ok && p != nil {
			s.levels[s.n] = &p.Mutations
			s.n++
		}
	}
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	s.loadLevels()
	e := &accesslog.Entry{Info: s.cb.Info(), RequestHeaders: h.Get}
	apply(s.f.cfg.Mutations.Request, h, e)
	for _, l := range s.levels[:s.n] {
		apply(l.Request, h, e)
	}
	return filter.HeadersContinue
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	e := &accesslog.Entry{Info: s.cb.Info(), ResponseHeaders: h.Get}
	if rh := s.cb.RequestHeaders(); rh != nil {
		e.RequestHeaders = rh.Get
	}
	apply(s.f.cfg.Mutations.Response, h, e)
	for _, l := range s.levels[:s.n] {
		apply(l.Response, h, e)
	}
	return filter.HeadersContinue
}
