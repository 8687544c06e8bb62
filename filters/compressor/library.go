package compressor

import (
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	brotliv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/compressor/v3"
	gzipv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	zstdv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/compressor/v3"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
)

// Library is a compressor_library: the encoding it writes, the name its
// stats use, and its settings.
type Library struct {
	// Encoding is the content-encoding token: gzip, br or zstd.
	Encoding string `json:"encoding"`
	// StatName is Envoy's stats prefix of the library: gzip, brotli, zstd.
	StatName string `json:"stat_name"`
	// Level is the gzip compression level (1-9, -1 default), brotli
	// quality (0-11) or zstd level (1-22).
	Level int `json:"level"`
	// HuffmanOnly is gzip's HUFFMAN_ONLY strategy.
	HuffmanOnly bool `json:"huffman_only,omitempty"`
	// WindowBits is brotli's lgwin (10-24).
	WindowBits int `json:"window_bits,omitempty"`
	// Checksum is zstd's enable_checksum.
	Checksum bool `json:"checksum,omitempty"`

	pool *sync.Pool // of encoders, reset per stream
}

// encoder is one stream's compressor, reused through the library's pool.
type encoder interface {
	io.Writer
	Flush() error
	Close() error
	Reset(w io.Writer)
}

// zstdEncoder gives zstd.Encoder the Reset signature.
type zstdEncoder struct{ *zstd.Encoder }

func (z zstdEncoder) Reset(w io.Writer) { z.Encoder.Reset(w) }

// get returns an encoder writing to w.
func (l *Library) get(w io.Writer) encoder {
	e := l.pool.Get().(encoder)
	e.Reset(w)
	return e
}

func (l *Library) put(e encoder) {
	e.Reset(nil)
	l.pool.Put(e)
}

func (l *Library) init() {
	l.pool = &sync.Pool{New: func() any {
		switch l.Encoding {
		case "gzip":
			level := l.Level
			if l.HuffmanOnly {
				level = gzip.HuffmanOnly
			}
			w, _ := gzip.NewWriterLevel(nil, level) // level checked by parseLibrary
			return w
		case "br":
			return brotli.NewWriterOptions(nil, brotli.WriterOptions{Quality: l.Level, LGWin: l.WindowBits})
		default:
			w, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(l.Level)), zstd.WithEncoderCRC(l.Checksum), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
			return zstdEncoder{w}
		}
	}}
}

// parseLibrary reads compressor_library's typed_config (path is its
// field path).
func parseLibrary(msg proto.Message, path string) (*Library, error) {
	var l *Library
	switch m := msg.(type) {
	case *gzipv3.Gzip:
		l = &Library{Encoding: "gzip", StatName: "gzip", Level: gzip.DefaultCompression}
		if m.GetCompressionLevel() != gzipv3.Gzip_DEFAULT_COMPRESSION {
			l.Level = int(m.GetCompressionLevel())
		}
		if l.Level < -1 || l.Level > 9 {
			return nil, config.FieldError(config.JoinPath(path, "compression_level"), "unknown level %d", l.Level)
		}
		l.HuffmanOnly = m.GetCompressionStrategy() == gzipv3.Gzip_HUFFMAN_ONLY
	case *brotliv3.Brotli:
		l = &Library{Encoding: "br", StatName: "brotli", Level: 3, WindowBits: 18}
		if q := m.GetQuality(); q != nil {
			if q.GetValue() > 11 {
				return nil, config.FieldError(config.JoinPath(path, "quality"), "%d is above 11", q.GetValue())
			}
			l.Level = int(q.GetValue())
		}
		if wb := m.GetWindowBits(); wb != nil {
			if wb.GetValue() < 10 || wb.GetValue() > 24 {
				return nil, config.FieldError(config.JoinPath(path, "window_bits"), "%d is not in 10..24", wb.GetValue())
			}
			l.WindowBits = int(wb.GetValue())
		}
	case *zstdv3.Zstd:
		l = &Library{Encoding: "zstd", StatName: "zstd", Level: 3, Checksum: m.GetEnableChecksum()}
		if lv := m.GetCompressionLevel(); lv != nil {
			l.Level = int(lv.GetValue())
		}
		if m.GetDictionary() != nil {
			return nil, config.NotSupportedError(config.JoinPath(path, "dictionary"), "")
		}
	case nil:
		return nil, config.FieldError(path, "missing: gzip, brotli or zstd compressor config")
	default:
		return nil, config.NotSupportedError(path, string(proto.MessageName(msg)))
	}
	l.init()
	return l, nil
}
