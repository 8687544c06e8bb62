package main

import (
	"github.com/tidwall/gjson"

	"github.com/wasmproxy/wasmproxy/filter"
)

// nativeJSONValidation is examples/json-validation written as a native Go
// filter, line for line the same logic and the same JSON library
// (gjson): the request must say content-type application/json, and its
// body, once complete, must be valid JSON holding every required key;
// otherwise the client gets 403.
type nativeJSONValidation struct{ requiredKeys []string }

func (n *nativeJSONValidation) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &nativeStream{cb: cb, requiredKeys: n.requiredKeys}
}

type nativeStream struct {
	cb           filter.Callbacks
	requiredKeys []string
}

func (s *nativeStream) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	if ct, ok := h.Get("content-type"); !ok || ct != "application/json" {
		s.cb.SendLocalReply(403, []byte("content-type must be provided"), nil, "native_json_validation")
		return filter.HeadersStopIteration
	}
	return filter.HeadersContinue
}

func (s *nativeStream) DecodeData(b *filter.Buffer, end bool) filter.DataStatus {
	if !end {
		// The plugin pauses until the whole body is there (Envoy then
		// buffers it for the next call); so does this.
		return filter.DataStopIterationAndBuffer
	}
	if !s.valid(b.Bytes) {
		s.cb.SendLocalReply(403, []byte("invalid payload"), nil, "native_json_validation")
		return filter.DataStopIterationNoBuffer
	}
	return filter.DataContinue
}

func (s *nativeStream) valid(body []byte) bool {
	if !gjson.ValidBytes(body) {
		return false
	}
	data := gjson.ParseBytes(body)
	for _, k := range s.requiredKeys {
		if !data.Get(k).Exists() {
			return false
		}
	}
	return true
}

func (s *nativeStream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (s *nativeStream) EncodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (s *nativeStream) EncodeData(*filter.Buffer, bool) filter.DataStatus { return filter.DataContinue }
func (s *nativeStream) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (s *nativeStream) OnLog()     {}
func (s *nativeStream) OnDestroy() {}
