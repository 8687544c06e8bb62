package rbac

import (
	"net/netip"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// Engine is one config.rbac.v3.RBAC: an action and its policies, sorted
// by name as Envoy keeps them (a std::map), so the first matching policy
// by name is the effective one.
type Engine struct {
	Action   string    `json:"action"` // ALLOW, DENY or LOG
	Policies []*Policy `json:"policies"`
}

// Policy matches when one of its permissions and one of its principals
// match.
type Policy struct {
	Name        string     `json:"name"`
	Permissions []*Matcher `json:"permissions"`
	Principals  []*Matcher `json:"principals"`
}

// Matcher is one Permission or Principal, by Kind:
//
//	and, or, not       Rules (not: one rule)
//	any                always
//	header             Header against the request headers
//	url_path           Path against :path without query and fragment
//	destination_ip     CIDR against the local address
//	destination_port   Port, the local port
//	destination_port_range  [PortStart, PortEnd)
//	requested_server_name   Name against the TLS SNI
//	authenticated      a TLS connection; with Name, a peer certificate
//	                   whose URI SAN, DNS SAN or else subject matches
//	source_ip, direct_remote_ip, remote_ip  CIDR against the client address
type Matcher struct {
	Kind      string                `json:"kind"`
	Rules     []*Matcher            `json:"rules,omitempty"`
	Header    *config.HeaderMatcher `json:"header,omitempty"`
	Path      *config.StringMatcher `json:"path,omitempty"`
	Name      *config.StringMatcher `json:"name,omitempty"`
	CIDR      *netip.Prefix         `json:"cidr,omitempty"`
	Port      uint32                `json:"port,omitempty"`
	PortStart int32                 `json:"port_start,omitempty"`
	PortEnd   int32                 `json:"port_end,omitempty"`
}

// Input is what a decision looks at: the stream (or connection) info,
// and the request headers (nil for a network connection, where header
// and url_path never match, as in Envoy's network filter).
type Input struct {
	Info    *filter.StreamInfo
	Headers *filter.HeaderMap
}

// Decide is Envoy's handleAction: allowed, and the effective policy (the
// first matching one by name, "" when none). ALLOW allows a request a
// policy matches, DENY one no policy matches; LOG allows every request.
func (e *Engine) Decide(in *Input) (allowed bool, policy string) {
	for _, p := range e.Policies {
		if p.matches(in) {
			policy = p.Name
			break
		}
	}
	switch e.Action {
	case "DENY":
		return policy == "", policy
	case "LOG":
		return true, policy
	}
	return policy != "", policy
}

func (p *Policy) matches(in *Input) bool {
	return anyMatch(p.Permissions, in) && anyMatch(p.Principals, in)
}

func anyMatch(ms []*Matcher, in *Input) bool {
	for _, m := range ms {
		if m.Match(in) {
			return true
		}
	}
	return false
}

// Match evaluates the matcher on one request or connection.
func (m *Matcher) Match(in *Input) bool {
	info := in.Info
	switch m.Kind {
	case "any":
		return true
	case "and":
		for _, r := range m.Rules {
			if !r.Match(in) {
				return false
			}
		}
		return true
	case "or":
		return anyMatch(m.Rules, in)
	case "not":
		return !m.Rules[0].Match(in)
	case "header":
		if in.Headers == nil {
			return false
		}
		return m.Header.Match(in.Headers.Values(m.Header.Name))
	case "url_path":
		if in.Headers == nil {
			return false
		}
		p, _ := in.Headers.Get(":path")
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		return m.Path.Match(p)
	case "destination_ip":
		return info != nil && m.CIDR.Contains(info.LocalAddr.Addr().Unmap())
	case "destination_port":
		return info != nil && uint32(info.LocalAddr.Port()) == m.Port
	case "destination_port_range":
		if info == nil {
			return false
		}
		port := int32(info.LocalAddr.Port())
		return port >= m.PortStart && port < m.PortEnd
	case "requested_server_name":
		sni := ""
		if info != nil && info.DownstreamTLS != nil {
			sni = info.DownstreamTLS.ServerName
		}
		return m.Name.Match(sni)
	case "source_ip", "direct_remote_ip", "remote_ip":
		return info != nil && m.CIDR.Contains(info.DownstreamAddr.Addr().Unmap())
	case "authenticated":
		if info == nil || info.DownstreamTLS == nil {
			return false
		}
		if m.Name == nil {
			return true
		}
		c := info.DownstreamTLS.PeerCertificate()
		if c == nil {
			return false
		}
		for _, u := range c.URIs {
			if m.Name.Match(u.String()) {
				return true
			}
		}
		for _, d := range c.DNSNames {
			if m.Name.Match(d) {
				return true
			}
		}
		return m.Name.Match(filter.CertificateSubject(c))
	}
	return false
}

// BuildEngine reads a config.rbac.v3.RBAC at path.
func BuildEngine(pb *rbacv3.RBAC, path string) (*Engine, error) {
	if pb.GetAuditLoggingOptions() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "audit_logging_options"), "")
	}
	e := &Engine{Action: pb.GetAction().String(), Policies: []*Policy{}}
	if _, ok := rbacv3.RBAC_Action_name[int32(pb.GetAction())]; !ok {
		return nil, config.FieldError(config.JoinPath(path, "action"), "unknown value %d", pb.GetAction())
	}
	names := make([]string, 0, len(pb.GetPolicies()))
	for n := range pb.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		pp := config.JoinPath(path, "policies") + "[\"" + n + "\"]"
		ppb := pb.GetPolicies()[n]
		if ppb.GetCondition() != nil || ppb.GetCheckedCondition() != nil || ppb.GetCelConfig() != nil {
			return nil, config.NotSupportedError(config.JoinPath(pp, "condition"), "CEL conditions")
		}
		if len(ppb.GetPermissions()) == 0 {
			return nil, config.FieldError(config.JoinPath(pp, "permissions"), "must have at least one permission")
		}
		if len(ppb.GetPrincipals()) == 0 {
			return nil, config.FieldError(config.JoinPath(pp, "principals"), "must have at least one principal")
		}
		p := &Policy{Name: n}
		for i, perm := range ppb.GetPermissions() {
			m, err := buildPermission(perm, config.IndexPath(config.JoinPath(pp, "permissions"), i))
			if err != nil {
				return nil, err
			}
			p.Permissions = append(p.Permissions, m)
		}
		for i, pr := range ppb.GetPrincipals() {
			m, err := buildPrincipal(pr, config.IndexPath(config.JoinPath(pp, "principals"), i))
			if err != nil {
				return nil, err
			}
			p.Principals = append(p.Principals, m)
		}
		e.Policies = append(e.Policies, p)
	}
	return e, nil
}

func buildPermission(pb *rbacv3.Permission, path string) (*Matcher, error) {
	switch r := pb.GetRule().(type) {
	case *rbacv3.Permission_AndRules, *rbacv3.Permission_OrRules:
		kind, field, rules := "and", "and_rules", pb.GetAndRules().GetRules()
		if _, ok := r.(*rbacv3.Permission_OrRules); ok {
			kind, field, rules = "or", "or_rules", pb.GetOrRules().GetRules()
		}
		m := &Matcher{Kind: kind}
		for i, sub := range rules {
			s, err := buildPermission(sub, config.IndexPath(config.JoinPath(config.JoinPath(path, field), "rules"), i))
			if err != nil {
				return nil, err
			}
			m.Rules = append(m.Rules, s)
		}
		if len(m.Rules) == 0 {
			return nil, config.FieldError(config.JoinPath(config.JoinPath(path, field), "rules"), "must have at least one rule")
		}
		return m, nil
	case *rbacv3.Permission_Any:
		if !r.Any {
			return nil, config.FieldError(config.JoinPath(path, "any"), "must be true")
		}
		return &Matcher{Kind: "any"}, nil
	case *rbacv3.Permission_NotRule:
		s, err := buildPermission(r.NotRule, config.JoinPath(path, "not_rule"))
		if err != nil {
			return nil, err
		}
		return &Matcher{Kind: "not", Rules: []*Matcher{s}}, nil
	case *rbacv3.Permission_Header:
		h, err := config.BuildHeaderMatcher(r.Header, config.JoinPath(path, "header"))
		if err != nil {
			return nil, err
		}
		return &Matcher{Kind: "header", Header: &h}, nil
	case *rbacv3.Permission_UrlPath:
		return buildURLPath(r.UrlPath.GetPath(), config.JoinPath(path, "url_path"))
	case *rbacv3.Permission_DestinationIp:
		return buildCIDR("destination_ip", r.DestinationIp, config.JoinPath(path, "destination_ip"))
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return nil, config.FieldError(config.JoinPath(path, "destination_port"), "%d is not a port (at most 65535)", r.DestinationPort)
		}
		return &Matcher{Kind: "destination_port", Port: r.DestinationPort}, nil
	case *rbacv3.Permission_DestinationPortRange:
		rg := r.DestinationPortRange
		if rg.GetStart() >= rg.GetEnd() {
			return nil, config.FieldError(config.JoinPath(path, "destination_port_range"), "start %d is not below end %d", rg.GetStart(), rg.GetEnd())
		}
		return &Matcher{Kind: "destination_port_range", PortStart: rg.GetStart(), PortEnd: rg.GetEnd()}, nil
	case *rbacv3.Permission_RequestedServerName:
		sm, err := config.BuildStringMatcher(r.RequestedServerName, config.JoinPath(path, "requested_server_name"))
		if err != nil {
			return nil, err
		}
		return &Matcher{Kind: "requested_server_name", Name: &sm}, nil
	case nil:
		return nil, config.FieldError(path, "no rule set")
	}
	return nil, config.NotSupportedError(config.JoinPath(path, ruleField(pb)), "")
}

func buildPrincipal(pb *rbacv3.Principal, path string) (*Matcher, error) {
	switch r := pb.GetIdentifier().(type) {
	case *rbacv3.Principal_AndIds, *rbacv3.Principal_OrIds:
		kind, field, ids := "and", "and_ids", pb.GetAndIds().GetIds()
		if _, ok := r.(*rbacv3.Principal_OrIds); ok {
			kind, field, ids = "or", "or_ids", pb.GetOrIds().GetIds()
		}
		m := &Matcher{Kind: kind}
		for i, sub := range ids {
			s, err := buildPrincipal(sub, config.IndexPath(config.JoinPath(config.JoinPath(path, field), "ids"), i))
			if err != nil {
				return nil, err
			}
			m.Rules = append(m.Rules, s)
		}
		if len(m.Rules) == 0 {
			return nil, config.FieldError(config.JoinPath(config.JoinPath(path, field), "ids"), "must have at least one id")
		}
		return m, nil
	case *rbacv3.Principal_Any:
		if !r.Any {
			return nil, config.FieldError(config.JoinPath(path, "any"), "must be true")
		}
		return &Matcher{Kind: "any"}, nil
	case *rbacv3.Principal_NotId:
		s, err := buildPrincipal(r.NotId, config.JoinPath(path, "not_id"))
		if err != nil {
			return nil, err
		}
		return &Matcher{Kind: "not", Rules: []*Matcher{s}}, nil
	case *rbacv3.Principal_Authenticated_:
		m := &Matcher{Kind: "authenticated"}
		if n := r.Authenticated.GetPrincipalName(); n != nil {
			sm, err := config.BuildStringMatcher(n, config.JoinPath(path, "authenticated.principal_name"))
			if err != nil {
				return nil, err
			}
			m.Name = &sm
		}
		return m, nil
	case *rbacv3.Principal_SourceIp:
		return buildCIDR("source_ip", r.SourceIp, config.JoinPath(path, "source_ip"))
	case *rbacv3.Principal_DirectRemoteIp:
		return buildCIDR("direct_remote_ip", r.DirectRemoteIp, config.JoinPath(path, "direct_remote_ip"))
	case *rbacv3.Principal_RemoteIp:
		return buildCIDR("remote_ip", r.RemoteIp, config.JoinPath(path, "remote_ip"))
	case *rbacv3.Principal_Header:
		h, err := config.BuildHeaderMatcher(r.Header, config.JoinPath(path, "header"))
		if err != nil {
			return nil, err
		}
		return &Matcher{Kind: "header", Header: &h}, nil
	case *rbacv3.Principal_UrlPath:
		return buildURLPath(r.UrlPath.GetPath(), config.JoinPath(path, "url_path"))
	case nil:
		return nil, config.FieldError(path, "no identifier set")
	}
	return nil, config.NotSupportedError(config.JoinPath(path, ruleField(pb)), "")
}

// ruleField names the oneof field set in a Permission or Principal.
func ruleField(pb proto.Message) string {
	m := pb.ProtoReflect()
	od := m.Descriptor().Oneofs().Get(0)
	if fd := m.WhichOneof(od); fd != nil {
		return string(fd.Name())
	}
	return string(od.Name())
}

func buildURLPath(sm *matcherv3.StringMatcher, path string) (*Matcher, error) {
	if sm == nil {
		return nil, config.FieldError(config.JoinPath(path, "path"), "missing")
	}
	m, err := config.BuildStringMatcher(sm, config.JoinPath(path, "path"))
	if err != nil {
		return nil, err
	}
	return &Matcher{Kind: "url_path", Path: &m}, nil
}

func buildCIDR(kind string, pb *corev3.CidrRange, path string) (*Matcher, error) {
	addr, err := netip.ParseAddr(pb.GetAddressPrefix())
	if err != nil {
		return nil, config.FieldError(config.JoinPath(path, "address_prefix"), "%q is not an IP address", pb.GetAddressPrefix())
	}
	bits := addr.BitLen()
	if l := pb.GetPrefixLen(); l != nil {
		if int(l.GetValue()) > bits {
			return nil, config.FieldError(config.JoinPath(path, "prefix_len"), "%d is longer than the address (%d bits)", l.GetValue(), bits)
		}
		bits = int(l.GetValue())
	}
	p := netip.PrefixFrom(addr, bits).Masked()
	return &Matcher{Kind: kind, CIDR: &p}, nil
}
