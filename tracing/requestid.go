package tracing

import (
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/wasmproxy/wasmproxy/config"
)

// Headers is the part of a request header map that request ids and
// trace propagation read and write (*filter.HeaderMap is one).
type Headers interface {
	Get(key string) (string, bool)
	Set(key, value string)
	Del(key string)
}

// NewRequestID makes an x-request-id: a random UUID v4, as Envoy's UUID
// request id extension does. Ids are made idsPerBatch at a time into one
// string (one allocation and one read of crypto/rand for the batch), and
// each id is a slice of it: a request costs no allocation of its own.
// An id keeps its batch's string alive while it is referenced (2.3 KiB
// at most); strings are immutable, so no id changes once handed out.
func NewRequestID() string {
	b := idBatches.Get().(*idBatch)
	if b.next == idsPerBatch {
		b.fill()
	}
	id := b.ids[b.next*uuidLen : (b.next+1)*uuidLen]
	b.next++
	idBatches.Put(b)
	return id
}

const (
	idsPerBatch = 64
	uuidLen     = 36
)

// idBatch is a string of idsPerBatch UUIDs and the index of the next one
// not handed out. A batch is owned by whoever took it from idBatches
// until it is put back; each id is handed out once.
type idBatch struct {
	ids  string
	next int
}

var idBatches = sync.Pool{New: func() any { return &idBatch{next: idsPerBatch} }}

// fill makes the batch's next idsPerBatch ids.
func (b *idBatch) fill() {
	var random [idsPerBatch * 16]byte
	_, _ = rand.Read(random[:])
	var sb strings.Builder
	sb.Grow(idsPerBatch * uuidLen)
	var out [uuidLen]byte
	for i := range idsPerBatch {
		u := random[i*16 : (i+1)*16]
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		hex.Encode(out[0:8], u[0:4])
		out[8] = '-'
		hex.Encode(out[9:13], u[4:6])
		out[13] = '-'
		hex.Encode(out[14:18], u[6:8])
		out[18] = '-'
		hex.Encode(out[19:23], u[8:10])
		out[23] = '-'
		hex.Encode(out[24:], u[10:])
		sb.Write(out[:])
	}
	b.ids, b.next = sb.String(), 0
}

// SetRequestID is the one place the x-request-id of a downstream request
// is decided, with Envoy's rule (ConnectionManagerUtility::
// mutateRequestHeaders): with generate_request_id (its default), a
// request without one gets a new id, and so does an edge request (one
// from an external client, which Envoy knows only under
// use_remote_address) unless preserve_external_request_id keeps the id
// it brought. Without generate_request_id nothing changes.
func SetRequestID(h Headers, cm *config.HTTPConnectionManager, edge bool) {
	if cm != nil && cm.NoRequestIDGeneration {
		return
	}
	preserve := cm != nil && cm.PreserveExternalRequestID
	if v, _ := h.Get("x-request-id"); v != "" && !(edge && !preserve) {
		return
	}
	h.Set("x-request-id", NewRequestID())
}

// Reason is why a request is traced, as Envoy encodes it in the version
// digit of a UUID x-request-id (UuidUtils): so a trace decision taken by
// the first proxy travels with the request id.
type Reason byte

const (
	NotTraced    Reason = '4'
	Sampled      Reason = '9'
	ClientForced Reason = 'a'
	Forced       Reason = 'b'
)

// isUUID reports whether id has a UUID's shape (Envoy rewrites the
// trace reason only in those).
func isUUID(id string) bool {
	if len(id) != 36 {
		return false
	}
	return id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-'
}

func reasonOf(id string) Reason {
	if !isUUID(id) {
		return NotTraced
	}
	switch r := Reason(id[14]); r {
	case Sampled, ClientForced, Forced:
		return r
	}
	return NotTraced
}

func setReason(h Headers, id string, r Reason) {
	if !isUUID(id) || Reason(id[14]) == r {
		return
	}
	b := []byte(id)
	b[14] = byte(r)
	h.Set("x-request-id", string(b))
}

// Decide is Envoy's tracing decision for a request
// (ConnectionManagerUtility::mutateTracingRequestHeader): a request whose
// x-request-id carries no trace reason yet is traced when it has an
// x-client-trace-id and client_sampling allows it, or asks for it with
// x-envoy-force-trace (not honoured on edge requests, whose internal
// headers Envoy removes), or when the request id's value falls under
// random_sampling; overall_sampling then may turn it off. The reason is
// written back into the request id, so it travels upstream. Returns
// whether the request is traced; false when the request id is missing
// or not a UUID (Envoy skips the decision then).
func Decide(h Headers, t *config.Tracing, edge bool) bool {
	id, _ := h.Get("x-request-id")
	if !isUUID(id) {
		return false
	}
	// UuidRequestIDExtension::getInteger: the first 8 hex digits.
	n, err := strconv.ParseUint(id[:8], 16, 64)
	if err != nil {
		return false
	}
	result := n % 10000
	if edge {
		h.Del("x-envoy-force-trace")
	}
	r := reasonOf(id)
	if r == NotTraced {
		_, client := h.Get("x-client-trace-id")
		_, force := h.Get("x-envoy-force-trace")
		switch {
		case client && mrand.Uint64N(10000) < percentOf(t.ClientSampling):
			r = ClientForced
		case force:
			r = Forced
		case result < percentOf(t.RandomSampling):
			r = Sampled
		}
	}
	if result >= percentOf(t.OverallSampling) {
		r = NotTraced
	}
	setReason(h, id, r)
	return r != NotTraced
}

// percentOf is a percentage as Envoy's FractionalPercent of ten
// thousand (PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT).
func percentOf(p float64) uint64 {
	return uint64(p*100 + 0.5)
}
