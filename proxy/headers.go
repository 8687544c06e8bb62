package proxy

import (
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
)

// isHopByHop reports the connection-level headers a proxy never
// forwards: connection, keep-alive, proxy-connection,
// transfer-encoding, upgrade, te and trailer (proxy-authenticate and
// proxy-authorization are forwarded, as Envoy does). It is called for
// every header of every request and response, so it is a switch on the
// length (one compare for most names) rather than a map's hash.
func isHopByHop(lowerKey string) bool {
	switch len(lowerKey) {
	case 2:
		return lowerKey == "te"
	case 7:
		return lowerKey == "upgrade" || lowerKey == "trailer"
	case 10:
		return lowerKey == "connection" || lowerKey == "keep-alive"
	case 16:
		return lowerKey == "proxy-connection"
	case 17:
		return lowerKey == "transfer-encoding"
	}
	return false
}

// Header-name case conversion happens twice per header per hop; caching
// the common names avoids an allocation each time.
// The caches are bounded so that clients sending endless distinct
// header names cannot grow them without limit.
var (
	lowerCache     sync.Map // canonical → lower
	canonicalCache sync.Map // lower → canonical
	cachedKeys     atomic.Int64
)

const maxCachedKeys = 4096

// lowerKey is k in lower case. A name already lower case (HTTP/2, many
// clients) is returned as it is and a well-known one in its canonical
// case from a fixed table, both without the shared cache's hashing of
// an interface and atomic loads (~0.3 us of a proxied request's CPU
// when every field went through it); others go through the cache.
func lowerKey(k string) string {
	upper := false
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			upper = true
			break
		}
	}
	if !upper {
		return k
	}
	if l, ok := commonLower[k]; ok {
		return l
	}
	if v, ok := lowerCache.Load(k); ok {
		return v.(string)
	}
	l := strings.ToLower(k)
	if len(k) <= 64 && cachedKeys.Add(1) <= maxCachedKeys {
		lowerCache.Store(k, l)
	}
	return l
}

// commonLower maps the canonical case of common header names to their
// lower case; read-only after init.
var commonLower = func() map[string]string {
	m := make(map[string]string, 2*len(commonLowerNames))
	for _, n := range commonLowerNames {
		m[textproto.CanonicalMIMEHeaderKey(n)] = n
		m[strings.ToUpper(n)] = n
	}
	return m
}()

var commonLowerNames = []string{"accept", "accept-encoding", "accept-language", "authorization",
	"cache-control", "connection", "content-encoding", "content-length", "content-type",
	"cookie", "date", "etag", "expect", "host", "if-modified-since", "if-none-match",
	"keep-alive", "last-modified", "location", "origin", "referer", "server", "set-cookie",
	"te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
	"x-forwarded-for", "x-forwarded-proto", "x-request-id"}

func canonicalKey(k string) string {
	if v, ok := canonicalCache.Load(k); ok {
		return v.(string)
	}
	c := textproto.CanonicalMIMEHeaderKey(k)
	if len(k) <= 64 && cachedKeys.Add(1) <= maxCachedKeys {
		canonicalCache.Store(k, c)
	}
	return c
}
