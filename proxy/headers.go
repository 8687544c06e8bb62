package proxy

import (
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
)

// hopByHop are the connection-level headers a proxy never forwards.
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"transfer-encoding":   true,
	"upgrade":             true,
	"te":                  true,
	"trailer":             true,
	"proxy-authenticate":  false,
	"proxy-authorization": false,
}

func isHopByHop(lowerKey string) bool { return hopByHop[lowerKey] }

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

func lowerKey(k string) string {
	if v, ok := lowerCache.Load(k); ok {
		return v.(string)
	}
	l := strings.ToLower(k)
	if len(k) <= 64 && cachedKeys.Add(1) <= maxCachedKeys {
		lowerCache.Store(k, l)
	}
	return l
}

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
