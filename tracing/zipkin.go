package tracing

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// zipkinParentAttr carries the real parent of a server span that shares
// its client's span id (the SDK records the client span as its parent);
// the exporter reads it and does not send it as a tag.
const zipkinParentAttr = "wasmproxy.zipkin.parent_id"

// zipkinExporter sends spans as Zipkin JSON v2 (a JSON array of spans)
// in one POST per batch to collector_endpoint on collector_cluster, as
// Envoy's Zipkin reporter does with HTTP_JSON.
type zipkinExporter struct {
	ups     filter.Upstreams
	cfg     *config.ZipkinTracer
	service string
	headers []filter.Pair
}

func newZipkinExporter(ups filter.Upstreams, cfg *config.ZipkinTracer, service string) *zipkinExporter {
	host := cfg.CollectorHostname
	if host == "" {
		host = cfg.CollectorCluster
	}
	return &zipkinExporter{ups: ups, cfg: cfg, service: service, headers: []filter.Pair{
		{Key: ":method", Value: "POST"},
		{Key: ":path", Value: cfg.CollectorEndpoint},
		{Key: ":authority", Value: host},
		{Key: "content-type", Value: "application/json"},
	}}
}

// zipkinSpan is one span of Zipkin's v2 JSON model.
type zipkinSpan struct {
	TraceID       string            `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId,omitempty"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind,omitempty"`
	Timestamp     int64             `json:"timestamp"`
	Duration      int64             `json:"duration"`
	LocalEndpoint *zipkinEndpoint   `json:"localEndpoint,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	Shared        bool              `json:"shared,omitempty"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName,omitempty"`
}

func (e *zipkinExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]zipkinSpan, 0, len(spans))
	for _, s := range spans {
		sc := s.SpanContext()
		z := zipkinSpan{
			TraceID:   b3TraceID(sc.TraceID()),
			ID:        sc.SpanID().String(),
			Name:      s.Name(),
			Timestamp: s.StartTime().UnixMicro(),
			Duration:  s.EndTime().Sub(s.StartTime()).Microseconds(),
			Tags:      map[string]string{},
		}
		if z.Duration < 1 {
			z.Duration = 1
		}
		if e.service != "" {
			z.LocalEndpoint = &zipkinEndpoint{ServiceName: e.service}
		}
		switch s.SpanKind() {
		case trace.SpanKindServer:
			z.Kind = "SERVER"
		case trace.SpanKindClient:
			z.Kind = "CLIENT"
		}
		if p := s.Parent(); p.IsValid() {
			z.ParentID = p.SpanID().String()
		}
		for _, a := range s.Attributes() {
			if a.Key == zipkinParentAttr {
				z.ParentID, z.Shared = a.Value.AsString(), true
				continue
			}
			z.Tags[string(a.Key)] = valueString(a.Value)
		}
		if p := s.Parent(); p.IsValid() && p.SpanID() == sc.SpanID() {
			// Shared with a client span that had no parent: a root.
			z.Shared = true
			if z.ParentID == p.SpanID().String() {
				z.ParentID = ""
			}
		}
		out = append(out, z)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	resp, err := e.ups.HTTPCall(ctx, e.cfg.CollectorCluster, e.headers, body, nil)
	if err != nil {
		return fmt.Errorf("zipkin export to cluster %q: %w", e.cfg.CollectorCluster, err)
	}
	status, _ := filter.NewHeaderMap(resp.Headers...).Get(":status")
	if len(status) != 3 || status[0] != '2' {
		return fmt.Errorf("zipkin export to cluster %q: HTTP %s: %.200s", e.cfg.CollectorCluster, status, resp.Body)
	}
	return nil
}

func (e *zipkinExporter) Shutdown(context.Context) error { return nil }

func valueString(v attribute.Value) string {
	if v.Type() == attribute.STRING {
		return v.AsString()
	}
	return v.Emit()
}
