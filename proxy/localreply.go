package proxy

import (
	"strconv"
	"time"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// localReplies is a connection manager's local_reply_config, ready to
// run: Envoy's LocalReply::rewrite (source/common/local_reply) and the
// content-type rule of its prepareLocalReply. nil means no config: every
// reply goes out as the proxy made it.
type localReplies struct {
	mappers []localReplyMapper
	format  *bodyFormatter // nil: the body is left as it is (text/plain)
}

type localReplyMapper struct {
	filter  accesslog.Filter
	status  int
	body    *string
	format  *bodyFormatter
	headers *config.HeaderMutations
}

type bodyFormatter struct {
	format      accesslog.Format
	contentType string
}

// newLocalReplies builds the rewriter of a local_reply_config (nil for
// none). Formats were checked when the config was parsed.
func newLocalReplies(cfg *config.LocalReplyConfig) (*localReplies, error) {
	if cfg == nil {
		return nil, nil
	}
	lr := &localReplies{}
	var err error
	if lr.format, err = newBodyFormatter(cfg.BodyFormat); err != nil {
		return nil, err
	}
	for _, m := range cfg.Mappers {
		lm := localReplyMapper{filter: accessLogFilter(m.Filter), status: int(m.StatusCode), body: m.Body, headers: m.HeadersToAdd}
		if lm.filter == nil {
			lm.filter = accesslog.And{} // an empty filter matches every reply
		}
		if lm.format, err = newBodyFormatter(m.BodyFormatOverride); err != nil {
			return nil, err
		}
		lr.mappers = append(lr.mappers, lm)
	}
	return lr, nil
}

func newBodyFormatter(bf *config.BodyFormat) (*bodyFormatter, error) {
	if bf == nil {
		return nil, nil
	}
	out := &bodyFormatter{contentType: bf.ContentType}
	if bf.JSON != nil {
		j, err := accesslog.ParseJSON(bf.JSON)
		if err != nil {
			return nil, err
		}
		j.OmitEmpty = bf.OmitEmptyValues
		out.format = j
	} else {
		f, err := accesslog.Parse(bf.Text)
		if err != nil {
			return nil, err
		}
		f.OmitEmpty = bf.OmitEmptyValues
		out.format = f
	}
	return out, nil
}

// rewrite applies the config to one local reply: the first mapper whose
// filter matches sets its body, adds its headers (seeing the original
// status), sets its status, and picks its body format; the body is then
// formatted. It records the final status in info and returns the reply
// to send. headers are the reply's headers so far (the route's response
// mutations, a plugin's); req may be nil.
func (lr *localReplies) rewrite(info *filter.StreamInfo, req *filter.HeaderMap, status int, body []byte, headers []filter.Pair) (int, []byte, []filter.Pair) {
	if lr == nil {
		return status, body, headers
	}
	h := filter.NewHeaderMapCap(len(headers) + 3)
	h.Add(":status", strconv.Itoa(status))
	for _, p := range headers {
		h.Add(p.Key, p.Value)
	}
	info.ResponseCode = status // status_code_filter reads it; so does %RESPONSE_CODE%
	if info.EndTime.IsZero() {
		// duration_filter and %DURATION% see the time so far, as Envoy's
		// current duration of a stream still running; the stream's own
		// end is set when it finishes.
		info.EndTime = time.Now()
		defer func() { info.EndTime = time.Time{} }()
	}
	ctBefore, _ := h.Get("content-type")
	original := string(body)
	text := original
	e := &accesslog.Entry{Info: info, ResponseHeaders: h.Get, Hostname: hostname}
	if req != nil {
		e.RequestHeaders = req.Get
	} else {
		e.RequestHeaders = func(string) (string, bool) { return "", false }
	}
	format := lr.format
	for i := range lr.mappers {
		m := &lr.mappers[i]
		e.LocalReplyBody = text
		if !m.filter.Match(e) {
			continue
		}
		if m.body != nil {
			text = *m.body
		}
		applyHeaderMutations(h, m.headers, e)
		if m.status != 0 && m.status != status {
			status = m.status
			h.Set(":status", strconv.Itoa(status))
			info.ResponseCode = status
		}
		if m.format != nil {
			format = m.format
		}
		break
	}
	contentType := "text/plain"
	if format != nil {
		e.LocalReplyBody = text
		text = format.format.Format(e)
		contentType = format.contentType
	}
	ctAfter, hasCT := h.Get("content-type")
	if text != "" {
		// Envoy sets the format's content type when the reply has none,
		// or when the body changed and no mapper set a content-type.
		if !hasCT || text != original && ctAfter == ctBefore {
			h.Set("content-type", contentType)
		}
	} else {
		h.Del("content-type")
	}
	h.Del("content-length") // the filter chain sets the body's length
	out := make([]filter.Pair, 0, h.Len())
	for _, p := range h.Pairs() {
		if p.Key != ":status" {
			out = append(out, p)
		}
	}
	if text == original {
		return status, body, out // a shared body (a direct_response's) stays shared
	}
	return status, []byte(text), out
}
