// Package headertometadata is envoy.filters.http.header_to_metadata: it
// turns request and response headers (or request cookies) into the
// stream's dynamic metadata (filter.StreamInfo.DynamicMetadata), with
// Envoy's semantics restated from
// source/extensions/filters/http/header_to_metadata/:
//
// Each rule names a header (or a cookie) and what to write when it is
// present (on_header_present) or missing (on_header_missing). A present
// header's value is all its values joined with ","; a cookie is present
// when it has a non-empty value. Present: the rule's value when set,
// else the header's value, rewritten by regex_value_rewrite when given.
// Missing: the rule's value (which must be set). An empty result writes
// nothing. The value (under 8 KiB) is base64-decoded with encode BASE64,
// then stored as a STRING, a NUMBER (trimmed, parsed as a double) or a
// PROTOBUF_VALUE (a serialized google.protobuf.Value); a value that fails
// any step is skipped. The key goes under metadata_namespace, by default
// "envoy.filters.http.header_to_metadata". remove takes the header out
// after reading it. Request rules run on the request headers, response
// rules on the response headers; a filter's writes are merged into each
// namespace once the rules have run (later keys replace earlier ones).
//
// A route's or virtual host's Config in typed_per_filter_config replaces
// the filter's (route over virtual host); it must have rules. With
// stat_prefix, counters http_filter_name.<stat_prefix>.
// request_rules_processed, response_rules_processed,
// request_metadata_added, response_metadata_added,
// request_header_not_found, response_header_not_found,
// base64_decode_failed, header_value_too_long,
// regex_substitution_failed.
package headertometadata

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"

	h2mv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name, and the default namespace.
const Name = "envoy.filters.http.header_to_metadata"

const message = "envoy.extensions.filters.http.header_to_metadata.v3.Config"

// maxValueLen is Envoy's MAX_HEADER_VALUE_LEN: a value this long or
// longer is not written.
const maxValueLen = 8 * 1024

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        message,
		Parse:         func(msg proto.Message, path string) (any, error) { return parse(msg, path, false) },
		PerRoute:      message,
		ParsePerRoute: func(msg proto.Message, path string) (any, error) { return parse(msg, path, true) },
		New:           newFactory,
	})
}

// Config is one header_to_metadata Config: the filter's or a route's.
type Config struct {
	RequestRules  []*Rule `json:"request_rules,omitempty"`
	ResponseRules []*Rule `json:"response_rules,omitempty"`
	StatPrefix    string  `json:"stat_prefix,omitempty"`

	once sync.Once
	st   *counters
}

// Rule is one Config.Rule.
type Rule struct {
	Header    string `json:"header,omitempty"` // lower-cased
	Cookie    string `json:"cookie,omitempty"`
	OnPresent *KV    `json:"on_header_present,omitempty"`
	OnMissing *KV    `json:"on_header_missing,omitempty"`
	Remove    bool   `json:"remove,omitempty"`
}

// KV is one Config.KeyValuePair.
type KV struct {
	Namespace string               `json:"metadata_namespace"`
	Key       string               `json:"key"`
	Value     string               `json:"value,omitempty"`
	Rewrite   *config.RegexRewrite `json:"regex_value_rewrite,omitempty"`
	Type      string               `json:"type"`
	Base64    bool                 `json:"base64,omitempty"`
}

func parse(msg proto.Message, path string, perRoute bool) (any, error) {
	pb, _ := msg.(*h2mv3.Config)
	if pb == nil {
		if perRoute {
			return nil, config.FieldError(path, "header_to_metadata_filter: Per filter configs must at least specify either request or response rules")
		}
		return &Config{}, nil
	}
	c := &Config{StatPrefix: pb.GetStatPrefix()}
	var err error
	if c.RequestRules, err = rules(pb.GetRequestRules(), config.JoinPath(path, "request_rules"), true); err != nil {
		return nil, err
	}
	if c.ResponseRules, err = rules(pb.GetResponseRules(), config.JoinPath(path, "response_rules"), false); err != nil {
		return nil, err
	}
	if perRoute && len(c.RequestRules) == 0 && len(c.ResponseRules) == 0 {
		// An empty filter config enables the filter for per-route rules;
		// an empty per-route config means nothing (Envoy's words).
		return nil, config.FieldError(path, "header_to_metadata_filter: Per filter configs must at least specify either request or response rules")
	}
	return c, nil
}

func rules(pbs []*h2mv3.Config_Rule, path string, request bool) ([]*Rule, error) {
	var out []*Rule
	for i, pb := range pbs {
		p := config.IndexPath(path, i)
		r := &Rule{Header: strings.ToLower(pb.GetHeader()), Cookie: pb.GetCookie(), Remove: pb.GetRemove()}
		switch {
		case r.Header != "" && r.Cookie != "":
			return nil, config.FieldError(p, "Cannot specify both header and cookie in the same rule")
		case r.Header == "" && r.Cookie == "":
			return nil, config.FieldError(p, "One of Cookie or Header option needs to be specified")
		case pb.GetOnHeaderPresent() == nil && pb.GetOnHeaderMissing() == nil:
			return nil, config.FieldError(p, "header to metadata filter: rule for %s has neither `on_header_present` nor `on_header_missing` set", r.selector())
		case r.Cookie != "" && r.Remove:
			return nil, config.FieldError(config.JoinPath(p, "remove"), "Cannot specify remove for cookie")
		case r.Cookie != "" && !request:
			// Envoy reads cookies from the Cookie header, which responses
			// do not carry; it would never match.
			return nil, config.FieldError(config.JoinPath(p, "cookie"), "a cookie rule applies to requests only (response_rules)")
		}
		var err error
		if pb.GetOnHeaderPresent() != nil {
			if r.OnPresent, err = kv(pb.GetOnHeaderPresent(), config.JoinPath(p, "on_header_present")); err != nil {
				return nil, err
			}
			if r.OnPresent.Value != "" && r.OnPresent.Rewrite != nil {
				return nil, config.FieldError(config.JoinPath(p, "on_header_present"), "Cannot specify both value and regex_value_rewrite")
			}
		}
		if pb.GetOnHeaderMissing() != nil {
			mp := config.JoinPath(p, "on_header_missing")
			if r.OnMissing, err = kv(pb.GetOnHeaderMissing(), mp); err != nil {
				return nil, err
			}
			if r.OnMissing.Value == "" {
				return nil, config.FieldError(config.JoinPath(mp, "value"), "Cannot specify on_header_missing rule with an empty value")
			}
			// Envoy applies regex_value_rewrite to present headers only.
			r.OnMissing.Rewrite = nil
		}
		out = append(out, r)
	}
	return out, nil
}

func (r *Rule) selector() string {
	if r.Header != "" {
		return "header '" + r.Header + "'"
	}
	return "cookie '" + r.Cookie + "'"
}

func kv(pb *h2mv3.Config_KeyValuePair, path string) (*KV, error) {
	if pb.GetKey() == "" {
		// The proto's validation: key has min_len 1.
		return nil, config.FieldError(config.JoinPath(path, "key"), "missing: the metadata key must not be empty")
	}
	k := &KV{Namespace: pb.GetMetadataNamespace(), Key: pb.GetKey(), Value: pb.GetValue(), Type: pb.GetType().String()}
	if k.Namespace == "" {
		k.Namespace = Name
	}
	switch pb.GetType() {
	case h2mv3.Config_STRING, h2mv3.Config_NUMBER, h2mv3.Config_PROTOBUF_VALUE:
	default:
		return nil, config.FieldError(config.JoinPath(path, "type"), "unknown value type %d", pb.GetType())
	}
	switch pb.GetEncode() {
	case h2mv3.Config_NONE:
	case h2mv3.Config_BASE64:
		k.Base64 = true
	default:
		return nil, config.FieldError(config.JoinPath(path, "encode"), "unknown encoding %d", pb.GetEncode())
	}
	if rw := pb.GetRegexValueRewrite(); rw != nil {
		var err error
		if k.Rewrite, err = config.BuildRegexRewrite(rw, config.JoinPath(path, "regex_value_rewrite")); err != nil {
			return nil, err
		}
	}
	return k, nil
}

type counters struct {
	rulesProcessed, metadataAdded, headerNotFound [2]*stats.Counter // [request, response]
	base64Failed, tooLong, regexFailed            *stats.Counter
}

type factory struct {
	name  string
	cfg   *Config
	store *stats.Store
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	return &factory{name: env.FilterName, cfg: cfg.(*Config), store: env.Stats}, nil
}

// counters of c, made on first use (a per-route config has no store
// until a stream uses it); nil without stat_prefix (Envoy's opt-in).
func (f *factory) counters(c *Config) *counters {
	c.once.Do(func() {
		if f.store == nil || c.StatPrefix == "" {
			return
		}
		p := "http_filter_name." + c.StatPrefix + "."
		s := f.store
		c.st = &counters{
			rulesProcessed: [2]*stats.Counter{s.Counter(p + "request_rules_processed"), s.Counter(p + "response_rules_processed")},
			metadataAdded:  [2]*stats.Counter{s.Counter(p + "request_metadata_added"), s.Counter(p + "response_metadata_added")},
			headerNotFound: [2]*stats.Counter{s.Counter(p + "request_header_not_found"), s.Counter(p + "response_header_not_found")},
			base64Failed:   s.Counter(p + "base64_decode_failed"),
			tooLong:        s.Counter(p + "header_value_too_long"),
			regexFailed:    s.Counter(p + "regex_substitution_failed"),
		}
	})
	return c.st
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f   *factory
	cb  filter.Callbacks
	cfg *Config // the effective config, chosen at the request headers
}

// config is the most specific config: route, virtual host, filter.
func (s *stream) config() *Config {
	if s.cfg != nil {
		return s.cfg
	}
	s.cfg = s.f.cfg
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	if rc, ok := route.(*Config); ok && rc != nil {
		s.cfg = rc
	} else if vc, ok := vhost.(*Config); ok && vc != nil {
		s.cfg = vc
	}
	return s.cfg
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	c := s.config()
	if len(c.RequestRules) > 0 {
		s.write(h, c, c.RequestRules, 0)
	}
	return filter.HeadersContinue
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	c := s.config()
	if len(c.ResponseRules) > 0 {
		s.write(h, c, c.ResponseRules, 1)
	}
	return filter.HeadersContinue
}

// write applies rules to h (dir 0: request, 1: response) and merges what
// they produce into the stream's dynamic metadata.
func (s *stream) write(h *filter.HeaderMap, c *Config, rules []*Rule, dir int) {
	st := s.f.counters(c)
	var out map[string]map[string]any
	for _, r := range rules {
		if st != nil {
			st.rulesProcessed[dir].Inc()
		}
		value, present := r.extract(h)
		var kv *KV
		switch {
		case present && r.OnPresent != nil:
			kv = r.OnPresent
			if kv.Value != "" {
				value = kv.Value
			} else if kv.Rewrite != nil {
				value = kv.Rewrite.Rewrite(value)
				if value == "" && st != nil {
					st.regexFailed.Inc()
				}
			}
		case !present && r.OnMissing != nil:
			kv, value = r.OnMissing, r.OnMissing.Value
		}
		if !present && st != nil {
			st.headerNotFound[dir].Inc()
		}
		if kv == nil || value == "" {
			continue
		}
		v, ok := convert(value, kv, st)
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]map[string]any{}
		}
		if out[kv.Namespace] == nil {
			out[kv.Namespace] = map[string]any{}
		}
		out[kv.Namespace][kv.Key] = v
		if st != nil {
			st.metadataAdded[dir].Inc()
		}
	}
	info := s.cb.Info()
	if info == nil {
		return
	}
	for ns, fields := range out {
		info.DynamicMetadata.Merge(ns, fields)
	}
}

// extract reads the rule's header (all values joined with ",", removed
// with remove) or cookie (present when non-empty).
func (r *Rule) extract(h *filter.HeaderMap) (string, bool) {
	if r.Cookie != "" {
		v := cookie(h, r.Cookie)
		return v, v != ""
	}
	vs := h.Values(r.Header)
	if len(vs) == 0 {
		return "", false
	}
	if r.Remove {
		h.Del(r.Header)
	}
	return strings.Join(vs, ","), true
}

// cookie finds a cookie's value in the request's cookie headers, as
// Envoy's parseCookieValue does: pairs split on ";", leading spaces
// trimmed, the first pair of that name wins, surrounding double quotes
// removed.
func cookie(h *filter.HeaderMap, name string) string {
	for _, line := range h.Values("cookie") {
		for _, part := range strings.Split(line, ";") {
			part = strings.TrimLeft(part, " ")
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// convert turns a value into the metadata value kv's type says; ok is
// false (and the key is not written) when it cannot, as in Envoy.
func convert(value string, kv *KV, st *counters) (any, bool) {
	if len(value) >= maxValueLen {
		if st != nil {
			st.tooLong.Inc()
		}
		return nil, false
	}
	if kv.Base64 {
		b, err := decodeBase64(value)
		if err != nil || len(b) == 0 {
			if st != nil {
				st.base64Failed.Inc()
			}
			return nil, false
		}
		value = string(b)
	}
	switch kv.Type {
	case "NUMBER":
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, false
		}
		return f, true
	case "PROTOBUF_VALUE":
		var pv structpb.Value
		if err := proto.Unmarshal([]byte(value), &pv); err != nil {
			return nil, false
		}
		return pv.AsInterface(), true
	}
	return value, true
}

// decodeBase64 decodes standard base64 with or without padding (Envoy's
// decodeWithoutPadding).
func decodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
