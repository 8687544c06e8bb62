package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/url"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// otlpExportPath is the OTLP/gRPC method spans are exported by.
const otlpExportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// otlpClient is the OTel exporter's transport (otlptrace.Client): the
// SDK batches spans and encodes them as OTLP; this sends each batch
// through the proxy's cluster, as Envoy's tracer sends through its
// async gRPC or HTTP client: a unary gRPC Export to the grpc_service
// cluster, or a protobuf POST to the http_service cluster.
type otlpClient struct {
	ups     filter.Upstreams
	grpc    bool
	cluster string
	headers []filter.Pair
}

func newOTLPClient(ups filter.Upstreams, o *config.OpenTelemetryTracer) *otlpClient {
	c := &otlpClient{ups: ups}
	if o.GRPCCluster != "" {
		c.grpc, c.cluster = true, o.GRPCCluster
		authority := o.GRPCAuthority
		if authority == "" {
			authority = o.GRPCCluster
		}
		c.headers = []filter.Pair{
			{Key: ":method", Value: "POST"},
			{Key: ":path", Value: otlpExportPath},
			{Key: ":authority", Value: authority},
			{Key: "content-type", Value: "application/grpc"},
			{Key: "te", Value: "trailers"},
		}
		return c
	}
	c.cluster = o.HTTPCluster
	path, authority := "/v1/traces", o.HTTPCluster
	if u, err := url.Parse(o.HTTPURI); err == nil {
		if u.Path != "" {
			path = u.RequestURI()
		}
		if u.Host != "" {
			authority = u.Host
		}
	}
	c.headers = []filter.Pair{
		{Key: ":method", Value: "POST"},
		{Key: ":path", Value: path},
		{Key: ":authority", Value: authority},
		{Key: "content-type", Value: "application/x-protobuf"},
	}
	for _, h := range o.HTTPHeaders {
		c.headers = append(c.headers, filter.Pair{Key: h.Key, Value: h.Value})
	}
	return c
}

func (c *otlpClient) Start(context.Context) error { return nil }
func (c *otlpClient) Stop(context.Context) error  { return nil }

// UploadTraces sends one batch; ctx carries the export timeout.
func (c *otlpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	msg, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: spans})
	if err != nil {
		return err
	}
	body := msg
	if c.grpc {
		body = make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
		copy(body[5:], msg)
	}
	resp, err := c.ups.HTTPCall(ctx, c.cluster, c.headers, body, nil)
	if err != nil {
		return fmt.Errorf("otlp export to cluster %q: %w", c.cluster, err)
	}
	hm := filter.NewHeaderMap(resp.Headers...)
	status, _ := hm.Get(":status")
	if !c.grpc {
		if len(status) != 3 || status[0] != '2' {
			return fmt.Errorf("otlp export to cluster %q: HTTP %s: %.200s", c.cluster, status, resp.Body)
		}
		return nil
	}
	if status != "200" {
		return fmt.Errorf("otlp export to cluster %q: HTTP %s: %.200s", c.cluster, status, resp.Body)
	}
	// grpc-status is a trailer, or a header in a trailers-only answer.
	tm := filter.NewHeaderMap(resp.Trailers...)
	gs, ok := tm.Get("grpc-status")
	if !ok {
		gs, ok = hm.Get("grpc-status")
	}
	if !ok {
		return fmt.Errorf("otlp export to cluster %q: no grpc-status", c.cluster)
	}
	if gs != "0" {
		m, _ := tm.Get("grpc-message")
		if m == "" {
			m, _ = hm.Get("grpc-message")
		}
		return fmt.Errorf("otlp export to cluster %q: grpc-status %s %s", c.cluster, gs, m)
	}
	return nil
}
