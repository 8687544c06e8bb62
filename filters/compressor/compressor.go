// Package compressor is envoy.filters.http.compressor for responses, with
// the gzip (klauspost/compress), brotli (andybalholm/brotli) and zstd
// (klauspost/compress) libraries, by Envoy's rules (restated from
// source/extensions/filters/http/common/compressor/compressor.cc):
//
// A response is compressible when it has a body, its content-length is
// at least min_content_length (default 30; a response without one is
// streamed and counts as long enough), its content-type (without
// parameters) is in content_type (default: Envoy's list of text, JSON,
// XML, JavaScript and SVG types; a response without one qualifies), it
// has no content-encoding, no cache-control no-transform, no ETag when
// disable_on_etag_header, and its status is not in
// uncompressible_response_codes. A compressible response gets
// Vary: Accept-Encoding. It is compressed when, of the stream's
// compressor filters, this one's encoding has the request's highest
// Accept-Encoding q-value (by name or "*"; the first configured on a
// tie), above 0 and not below identity's: content-length is removed,
// content-encoding set, a strong ETag dropped (weak ones kept, or all
// weakened with weaken_etag_on_compress). Body chunks are compressed as
// they pass and flushed, so streaming responses stream; the stream is
// finished with the last chunk.
//
// Stats, under http.<stat_prefix>.compressor.<library name>.<gzip|brotli|zstd>.:
// compressed, not_compressed, no_accept_header, content_length_too_small,
// not_compressed_etag, total_uncompressed_bytes, total_compressed_bytes.
package compressor

import (
	"bytes"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	compv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/compressor/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.compressor"

func init() {
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.compressor.v3.Compressor",
		Parse:         parse,
		PerRoute:      "envoy.extensions.filters.http.compressor.v3.CompressorPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// defaultContentTypes is Envoy's default content_type list.
var defaultContentTypes = []string{
	"text/html", "text/plain", "text/css", "application/javascript", "application/x-javascript",
	"text/javascript", "text/x-javascript", "text/ecmascript", "text/js", "text/jscript",
	"text/x-js", "application/ecmascript", "application/x-json", "application/xml",
	"application/json", "image/svg+xml", "text/xml", "application/xhtml+xml",
}

// Config is the filter's config.
type Config struct {
	// LibraryName is compressor_library.name, the stats' <stat_prefix>.
	LibraryName string   `json:"library_name"`
	Library     *Library `json:"library"`
	// MinContentLength defaults to 30.
	MinContentLength   uint32   `json:"min_content_length"`
	ContentTypes       []string `json:"content_types"`
	DisableOnEtag      bool     `json:"disable_on_etag_header,omitempty"`
	WeakenEtag         bool     `json:"weaken_etag_on_compress,omitempty"`
	RemoveAcceptEnc    bool     `json:"remove_accept_encoding_header,omitempty"`
	UncompressibleCode []uint32 `json:"uncompressible_response_codes,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*compv3.Compressor)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: the compressor needs a typed_config with compressor_library")
	}
	// Fields of the deprecated top level and the request direction are
	// not read: refuse them rather than ignore them.
	for _, f := range []struct {
		set  bool
		name string
	}{
		{pb.GetContentLength() != nil, "content_length"},
		{len(pb.GetContentType()) > 0, "content_type"},
		{pb.GetDisableOnEtagHeader(), "disable_on_etag_header"},
		{pb.GetRemoveAcceptEncodingHeader(), "remove_accept_encoding_header"},
		{pb.GetRuntimeEnabled() != nil, "runtime_enabled"},
		{pb.GetRequestDirectionConfig() != nil, "request_direction_config"},
		{pb.GetChooseFirst(), "choose_first"},
	} {
		if f.set {
			detail := ""
			if f.name != "request_direction_config" && f.name != "choose_first" {
				detail = "deprecated; use response_direction_config"
			}
			return nil, config.NotSupportedError(config.JoinPath(path, f.name), detail)
		}
	}
	c := &Config{MinContentLength: 30, ContentTypes: defaultContentTypes}
	libPath := config.JoinPath(path, "compressor_library")
	lib := pb.GetCompressorLibrary()
	if lib == nil {
		return nil, config.FieldError(libPath, "missing")
	}
	c.LibraryName = lib.GetName()
	var err error
	if c.Library, err = parseLibraryAny(lib, libPath); err != nil {
		return nil, err
	}
	rdPath := config.JoinPath(path, "response_direction_config")
	rd := pb.GetResponseDirectionConfig()
	cc := rd.GetCommonConfig()
	ccPath := config.JoinPath(rdPath, "common_config")
	if cc.GetEnabled() != nil {
		return nil, config.NotSupportedError(config.JoinPath(ccPath, "enabled"), "runtime feature flags")
	}
	if len(cc.GetContentTypeMatcher()) > 0 {
		return nil, config.NotSupportedError(config.JoinPath(ccPath, "content_type_matcher"), "")
	}
	if v := cc.GetMinContentLength(); v != nil {
		c.MinContentLength = v.GetValue()
	}
	if ct := cc.GetContentType(); len(ct) > 0 {
		c.ContentTypes = make([]string, len(ct))
		for i, t := range ct {
			c.ContentTypes[i] = strings.ToLower(strings.TrimSpace(t))
		}
	}
	c.DisableOnEtag = rd.GetDisableOnEtagHeader()
	c.WeakenEtag = rd.GetWeakenEtagOnCompress()
	c.RemoveAcceptEnc = rd.GetRemoveAcceptEncodingHeader()
	c.UncompressibleCode = rd.GetUncompressibleResponseCodes()
	if rd.GetStatusHeaderEnabled() {
		return nil, config.NotSupportedError(config.JoinPath(rdPath, "status_header_enabled"), "")
	}
	return c, nil
}

func parseLibraryAny(lib *corev3.TypedExtensionConfig, path string) (*Library, error) {
	tcPath := config.JoinPath(path, "typed_config")
	if lib.GetTypedConfig() == nil {
		return nil, config.FieldError(tcPath, "missing")
	}
	m, err := lib.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, config.FieldError(tcPath, "cannot decode %q: %v", lib.GetTypedConfig().GetTypeUrl(), err)
	}
	return parseLibrary(m, tcPath)
}

// PerRoute is CompressorPerRoute: Disabled turns compression off on the
// route or virtual host.
type PerRoute struct {
	Disabled bool `json:"disabled"`
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*compv3.CompressorPerRoute)
	if !ok {
		return nil, config.FieldError(path, "want CompressorPerRoute")
	}
	if pb.GetOverrides() != nil {
		return nil, config.NotSupportedError(config.JoinPath(path, "overrides"), "")
	}
	return &PerRoute{Disabled: pb.GetDisabled()}, nil
}

type counters struct {
	compressed, notCompressed, noAcceptHeader, lengthTooSmall, notCompressedEtag *stats.Counter
	uncompressedBytes, compressedBytes                                           *stats.Counter
}

type factory struct {
	name  string
	cfg   *Config
	stats counters
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	c := cfg.(*Config)
	f := &factory{name: env.FilterName, cfg: c}
	if st := env.Stats; st != nil {
		p := env.StatPrefix + "compressor." + c.LibraryName + "." + c.Library.StatName + "."
		f.stats = counters{
			compressed:        st.Counter(p + "compressed"),
			notCompressed:     st.Counter(p + "not_compressed"),
			noAcceptHeader:    st.Counter(p + "no_accept_header"),
			lengthTooSmall:    st.Counter(p + "content_length_too_small"),
			notCompressedEtag: st.Counter(p + "not_compressed_etag"),
			uncompressedBytes: st.Counter(p + "total_uncompressed_bytes"),
			compressedBytes:   st.Counter(p + "total_compressed_bytes"),
		}
	}
	return f, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

type stream struct {
	filter.PassThrough
	f  *factory
	cb filter.Callbacks
	// accept is the request's Accept-Encoding, read at DecodeHeaders
	// (before remove_accept_encoding_header takes it away).
	accept    string
	hasAccept bool
	head      bool
	enc       encoder
	out       bytes.Buffer
	// last is the buffer of the last EncodeData: the engine passes what
	// is put there on ahead of the trailers (filterchain), where the
	// compressed stream is finished when trailers end the response.
	last *filter.Buffer
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, _ bool) filter.HeadersStatus {
	s.accept, s.hasAccept = h.Get("accept-encoding")
	if m, _ := h.Get(":method"); m == "HEAD" {
		s.head = true
	}
	if !s.disabledHere() {
		// Announce this filter's encoding to the compressors after it
		// in the chain, so that all pick one (chosen).
		fs := &s.cb.Info().FilterState
		prev, _ := fs.Get(registryKey)
		if len(prev) > 0 {
			prev = append(prev, ',')
		}
		fs.Set(registryKey, append(prev, s.f.cfg.Library.Encoding...), false)
	}
	if s.f.cfg.RemoveAcceptEnc && s.hasAccept {
		h.Del("accept-encoding")
	}
	return filter.HeadersContinue
}

func (s *stream) disabledHere() bool {
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	for _, c := range [2]any{route, vhost} {
		if p, ok := c.(*PerRoute); ok && p != nil {
			return p.Disabled
		}
	}
	return false
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	c := s.f.cfg
	if end || s.head || s.disabledHere() {
		return filter.HeadersContinue
	}
	if cl, ok := h.Get("content-length"); ok {
		if n, err := strconv.ParseUint(strings.TrimSpace(cl), 10, 64); err == nil && n < uint64(c.MinContentLength) {
			inc(s.f.stats.lengthTooSmall)
			return filter.HeadersContinue
		}
	}
	if !s.compressible(h) {
		return filter.HeadersContinue
	}
	addVary(h)
	if !s.hasAccept {
		inc(s.f.stats.noAcceptHeader)
		inc(s.f.stats.notCompressed)
		return filter.HeadersContinue
	}
	registered, _ := s.cb.Info().FilterState.Get(registryKey)
	if chosen(s.accept, string(registered)) != c.Library.Encoding {
		inc(s.f.stats.notCompressed)
		return filter.HeadersContinue
	}
	if et, ok := h.Get("etag"); ok {
		switch {
		case c.WeakenEtag && !strings.HasPrefix(et, "W/"):
			h.Set("etag", "W/"+et)
		case !strings.HasPrefix(et, "W/"):
			h.Del("etag") // a strong validator no longer holds
		}
	}
	h.Del("content-length")
	h.Set("content-encoding", c.Library.Encoding)
	inc(s.f.stats.compressed)
	s.enc = c.Library.get(&s.out)
	return filter.HeadersContinue
}

// compressible applies the rules on the response itself.
func (s *stream) compressible(h *filter.HeaderMap) bool {
	c := s.f.cfg
	if st, _ := h.Get(":status"); len(c.UncompressibleCode) > 0 {
		code, _ := strconv.Atoi(st)
		for _, u := range c.UncompressibleCode {
			if uint32(code) == u {
				return false
			}
		}
	}
	if _, ok := h.Get("content-encoding"); ok {
		return false
	}
	for _, v := range h.Values("cache-control") {
		if containsToken(v, "no-transform") {
			return false
		}
	}
	if ct, ok := h.Get("content-type"); ok {
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		ct = strings.TrimSpace(ct)
		allowed := false
		for _, t := range c.ContentTypes {
			if strings.EqualFold(ct, t) {
				allowed = true
				break
			}
		}
		if !allowed {
			return false
		}
	}
	if c.DisableOnEtag {
		if _, ok := h.Get("etag"); ok {
			inc(s.f.stats.notCompressedEtag)
			return false
		}
	}
	return true
}

func (s *stream) EncodeData(data *filter.Buffer, end bool) filter.DataStatus {
	if s.enc == nil {
		return filter.DataContinue
	}
	in := len(data.Bytes)
	s.last = data
	s.out.Reset()
	_, _ = s.enc.Write(data.Bytes) // writes to s.out cannot fail
	if end {
		_ = s.enc.Close()
		s.f.cfg.Library.put(s.enc)
		s.enc = nil
	} else if in > 0 {
		_ = s.enc.Flush()
	}
	add(s.f.stats.uncompressedBytes, in)
	add(s.f.stats.compressedBytes, s.out.Len())
	// The chain owns data.Bytes: reuse its array when the output fits.
	data.Bytes = append(data.Bytes[:0], s.out.Bytes()...)
	return filter.DataContinue
}

func (s *stream) OnDestroy() {
	if s.enc != nil { // the stream ended before its last chunk
		s.f.cfg.Library.put(s.enc)
		s.enc = nil
	}
}

// registryKey is the filter state entry where the compressor filters of
// a stream list their encodings, in chain order.
const registryKey = "envoy.compression.encodings"

// chosen is the encoding the response gets, among the comma-separated
// registered ones (the chain's compressors, in configuration order): the
// one the Accept-Encoding value gives the highest q-value (by name, or
// through "*"), the first on a tie, as Envoy's compressors agree on one;
// "" when none has a q-value above zero and not below identity's.
func chosen(accept, registered string) string {
	best, bestQ := "", 0.0
	for _, enc := range strings.Split(registered, ",") {
		if q := qValue(accept, enc); q > bestQ {
			best, bestQ = enc, q
		}
	}
	if best == "" || bestQ < qIdentity(accept) {
		return ""
	}
	return best
}

// qIdentity is identity's explicit q-value, or -1.
func qIdentity(accept string) float64 {
	_, _, q := qValues(accept, "")
	return q
}

// qValue is enc's q-value in accept: by name, else through "*", else 0.
func qValue(accept, enc string) float64 {
	qEnc, qStar, _ := qValues(accept, enc)
	if qEnc < 0 {
		qEnc = qStar
	}
	return max(qEnc, 0)
}

// qValues reads the q-values of enc, "*" and identity (-1 when absent).
func qValues(accept, enc string) (qEnc, qStar, qIdentity float64) {
	qEnc, qStar, qIdentity = -1.0, -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		token, params, _ := strings.Cut(part, ";")
		token = strings.ToLower(strings.TrimSpace(token))
		q := 1.0
		if params != "" {
			k, v, ok := strings.Cut(strings.TrimSpace(params), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil || f < 0 || f > 1 {
					continue // an invalid entry counts as absent
				}
				q = f
			}
		}
		switch token {
		case "":
		case enc:
			qEnc = q
		case "*":
			qStar = q
		case "identity":
			qIdentity = q
		}
	}
	return qEnc, qStar, qIdentity
}

// addVary adds accept-encoding to Vary unless it is there.
func addVary(h *filter.HeaderMap) {
	for _, v := range h.Values("vary") {
		if containsToken(v, "accept-encoding") || strings.TrimSpace(v) == "*" {
			return
		}
	}
	if v, ok := h.Get("vary"); ok && v != "" {
		h.Set("vary", v+", Accept-Encoding")
		return
	}
	h.Set("vary", "Accept-Encoding")
}

func containsToken(list, token string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}

func add(c *stats.Counter, n int) {
	if c != nil {
		c.Add(uint64(n))
	}
}

// EncodeTrailers finishes the compressed stream when trailers end the
// response: its last bytes go ahead of the trailers, as Envoy's
// compressor adds them with addEncodedData.
func (s *stream) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if s.enc == nil || s.last == nil {
		return filter.TrailersContinue
	}
	s.out.Reset()
	_ = s.enc.Close()
	s.f.cfg.Library.put(s.enc)
	s.enc = nil
	add(s.f.stats.compressedBytes, s.out.Len())
	s.last.Bytes = append(s.last.Bytes, s.out.Bytes()...)
	return filter.TrailersContinue
}
