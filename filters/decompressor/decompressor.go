// Package decompressor is envoy.filters.http.decompressor with the gzip,
// brotli and zstd decompressor libraries, by Envoy's rules (restated
// from source/extensions/filters/http/decompressor/): in each direction
// (both on by default), a message whose Content-Encoding's first value
// is the library's encoding (any case), and without cache-control
// no-transform unless ignore_no_transform_header, is decompressed: that
// value leaves Content-Encoding (the header goes when it was the only
// one), Content-Length goes. With the response direction on and
// advertise_accept_encoding (default true), the library's encoding is
// appended to the request's Accept-Encoding.
//
// Unlike Envoy, the body is decompressed whole at its end (it is held
// under the connection's buffer limits), not chunk by chunk. Output is
// capped at max_inflate_ratio (gzip; default 100) times the input, and
// at 100 times for brotli and zstd; a body that fails to decode or
// passes the cap keeps what was decoded, as Envoy's libraries stop
// there.
//
// Stats, under http.<stat_prefix>.decompressor.<library name>.<gzip|brotli|zstd>.<request|response>.:
// decompressed, not_decompressed, total_compressed_bytes,
// total_uncompressed_bytes.
package decompressor

import (
	"bytes"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	brotliv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/decompressor/v3"
	gzipv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/decompressor/v3"
	zstdv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/decompressor/v3"
	decv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/decompressor/v3"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name.
const Name = "envoy.filters.http.decompressor"

func init() {
	filters.Register(&filters.Native{
		Name:   Name,
		Config: "envoy.extensions.filters.http.decompressor.v3.Decompressor",
		Parse:  parse,
		New:    newFactory,
	})
}

// Config is the filter's config.
type Config struct {
	LibraryName string `json:"library_name"`
	// Encoding is gzip, br or zstd; StatName gzip, brotli or zstd.
	Encoding        string    `json:"encoding"`
	StatName        string    `json:"stat_name"`
	MaxInflateRatio uint32    `json:"max_inflate_ratio"`
	Request         Direction `json:"request"`
	Response        Direction `json:"response"`
	// Advertise is advertise_accept_encoding.
	Advertise bool `json:"advertise_accept_encoding"`
}

// Direction is one direction's common_config.
type Direction struct {
	Enabled           bool `json:"enabled"`
	IgnoreNoTransform bool `json:"ignore_no_transform_header,omitempty"`
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*decv3.Decompressor)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: the decompressor needs a typed_config with decompressor_library")
	}
	c := &Config{MaxInflateRatio: 100, Advertise: true, Request: Direction{Enabled: true}, Response: Direction{Enabled: true}}
	libPath := config.JoinPath(path, "decompressor_library")
	lib := pb.GetDecompressorLibrary()
	if lib == nil {
		return nil, config.FieldError(libPath, "missing")
	}
	c.LibraryName = lib.GetName()
	if err := parseLibrary(c, lib, libPath); err != nil {
		return nil, err
	}
	dirs := []struct {
		cc   *decv3.Decompressor_CommonDirectionConfig
		path string
		to   *Direction
	}{
		{pb.GetRequestDirectionConfig().GetCommonConfig(), config.JoinPath(path, "request_direction_config.common_config"), &c.Request},
		{pb.GetResponseDirectionConfig().GetCommonConfig(), config.JoinPath(path, "response_direction_config.common_config"), &c.Response},
	}
	for _, d := range dirs {
		if e := d.cc.GetEnabled(); e != nil {
			if e.GetRuntimeKey() != "" {
				return nil, config.NotSupportedError(config.JoinPath(d.path, "enabled.runtime_key"), "no runtime layer")
			}
			d.to.Enabled = e.GetDefaultValue().GetValue()
		}
		d.to.IgnoreNoTransform = d.cc.GetIgnoreNoTransformHeader()
	}
	if v := pb.GetRequestDirectionConfig().GetAdvertiseAcceptEncoding(); v != nil {
		c.Advertise = v.GetValue()
	}
	return c, nil
}

func parseLibrary(c *Config, lib *corev3.TypedExtensionConfig, path string) error {
	tcPath := config.JoinPath(path, "typed_config")
	if lib.GetTypedConfig() == nil {
		return config.FieldError(tcPath, "missing")
	}
	m, err := lib.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return config.FieldError(tcPath, "cannot decode %q: %v", lib.GetTypedConfig().GetTypeUrl(), err)
	}
	switch m := m.(type) {
	case *gzipv3.Gzip:
		c.Encoding, c.StatName = "gzip", "gzip"
		if r := m.GetMaxInflateRatio(); r != nil {
			c.MaxInflateRatio = r.GetValue()
		}
	case *brotliv3.Brotli:
		c.Encoding, c.StatName = "br", "brotli"
	case *zstdv3.Zstd:
		c.Encoding, c.StatName = "zstd", "zstd"
		if len(m.GetDictionaries()) > 0 {
			return config.NotSupportedError(config.JoinPath(tcPath, "dictionaries"), "")
		}
	default:
		return config.NotSupportedError(tcPath, string(proto.MessageName(m)))
	}
	return nil
}

type dirStats struct {
	decompressed, notDecompressed, compressedBytes, uncompressedBytes *stats.Counter
}

type factory struct {
	cfg      *Config
	req, res dirStats
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	c := cfg.(*Config)
	f := &factory{cfg: c}
	if st := env.Stats; st != nil {
		p := env.StatPrefix + "decompressor." + c.LibraryName + "." + c.StatName + "."
		mk := func(dir string) dirStats {
			return dirStats{
				decompressed:      st.Counter(p + dir + ".decompressed"),
				notDecompressed:   st.Counter(p + dir + ".not_decompressed"),
				compressedBytes:   st.Counter(p + dir + ".total_compressed_bytes"),
				uncompressedBytes: st.Counter(p + dir + ".total_uncompressed_bytes"),
			}
		}
		f.req, f.res = mk("request"), mk("response")
	}
	return f, nil
}

func (f *factory) NewStreamFilter(filter.Callbacks) filter.StreamFilter { return &stream{f: f} }

type stream struct {
	filter.PassThrough
	f        *factory
	req, res half
}

// half is one direction's state: whether it decompresses, and the
// buffer it was last given (trailers end the body there).
type half struct {
	on   bool
	last *filter.Buffer
}

// start decides for one direction's headers.
func (s *stream) start(h *filter.HeaderMap, d Direction, st *dirStats, hf *half) {
	ce, ok := h.Get("content-encoding")
	first := ce
	if i := strings.IndexByte(ce, ','); i >= 0 {
		first = ce[:i]
	}
	noTransform := false
	for _, v := range h.Values("cache-control") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "no-transform") {
				noTransform = true
			}
		}
	}
	if !d.Enabled || !ok || (noTransform && !d.IgnoreNoTransform) || !strings.EqualFold(strings.TrimSpace(first), s.f.cfg.Encoding) {
		inc(st.notDecompressed)
		return
	}
	inc(st.decompressed)
	hf.on = true
	h.Del("content-length")
	if rest := strings.TrimSpace(strings.TrimPrefix(ce, first)); strings.HasPrefix(rest, ",") {
		h.Set("content-encoding", strings.TrimSpace(rest[1:]))
	} else {
		h.Del("content-encoding")
	}
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	c := s.f.cfg
	if c.Response.Enabled && c.Advertise {
		if v, ok := h.Get("accept-encoding"); ok && v != "" {
			h.Set("accept-encoding", v+","+c.Encoding)
		} else {
			h.Set("accept-encoding", c.Encoding)
		}
	}
	if !end {
		s.start(h, c.Request, &s.f.req, &s.req)
	}
	return filter.HeadersContinue
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	if !end {
		s.start(h, s.f.cfg.Response, &s.f.res, &s.res)
	}
	return filter.HeadersContinue
}

// data holds the body until its end, then decodes it in place.
func (s *stream) data(hf *half, st *dirStats, b *filter.Buffer, end bool) filter.DataStatus {
	if !hf.on {
		return filter.DataContinue
	}
	hf.last = b
	if !end {
		return filter.DataStopIterationAndBuffer
	}
	s.finish(hf, st)
	return filter.DataContinue
}

func (s *stream) finish(hf *half, st *dirStats) {
	hf.on = false
	b := hf.last
	in := b.Bytes
	limit := int64(len(in)) * int64(s.f.cfg.MaxInflateRatio)
	var r io.Reader
	var closeFn func()
	switch s.f.cfg.Encoding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(in))
		if err != nil {
			b.Bytes = nil
			return
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(in))
	default:
		zr, err := zstd.NewReader(bytes.NewReader(in), zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Bytes = nil
			return
		}
		r, closeFn = zr, zr.Close
	}
	var out bytes.Buffer
	_, _ = io.Copy(&out, io.LimitReader(r, limit)) // keep what decoded, as Envoy does
	if closeFn != nil {
		closeFn()
	}
	add(st.compressedBytes, len(in))
	add(st.uncompressedBytes, out.Len())
	b.Bytes = out.Bytes()
}

func (s *stream) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return s.data(&s.req, &s.f.req, b, end)
}

func (s *stream) EncodeData(b *filter.Buffer, end bool) filter.DataStatus {
	return s.data(&s.res, &s.f.res, b, end)
}

// Trailers end a held body: decode it, and it goes on ahead of them.
func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if s.req.on && s.req.last != nil {
		s.finish(&s.req, &s.f.req)
	}
	return filter.TrailersContinue
}

func (s *stream) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	if s.res.on && s.res.last != nil {
		s.finish(&s.res, &s.f.res)
	}
	return filter.TrailersContinue
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
