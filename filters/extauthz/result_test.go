package extauthz

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestGRPCResult: a CheckResponse is read as Envoy's gRPC client reads
// it: ok_response headers set unless append (or append_action) says
// otherwise, keys lower-cased; a denial's status defaults to 403 and a
// status Envoy does not know becomes 403.
func TestGRPCResult(t *testing.T) {
	hv := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, Value: v} }
	ok := grpcResult(&authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			{Header: hv("X-Set", "1")},
			{Header: hv("x-add", "2"), Append: wrapperspb.Bool(true)},
			{Header: hv("x-set2", "3"), Append: wrapperspb.Bool(false)},
			{Header: hv("x-absent", "4"), AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
			{Header: hv("x-exists", "5"), AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
			{Header: hv("x-over", "6"), AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		},
		HeadersToRemove:      []string{"x-gone"},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: hv("x-resp", "7"), Append: wrapperspb.Bool(true)}},
	}}})
	want := &result{
		outcome:     allowed,
		set:         []filter.Pair{{Key: "x-set", Value: "1"}, {Key: "x-set2", Value: "3"}, {Key: "x-over", Value: "6"}},
		add:         []filter.Pair{{Key: "x-add", Value: "2"}},
		addIfAbsent: []filter.Pair{{Key: "x-absent", Value: "4"}},
		setIfExists: []filter.Pair{{Key: "x-exists", Value: "5"}},
		remove:      []string{"x-gone"},
		respAdd:     []filter.Pair{{Key: "x-resp", Value: "7"}},
	}
	if !reflect.DeepEqual(ok, want) {
		t.Errorf("ok response:\n got %+v\nwant %+v", ok, want)
	}
	for code, wantStatus := range map[typev3.StatusCode]int{0: 403, typev3.StatusCode_TooManyRequests: 429, 999: 403} {
		d := grpcResult(&authv3.CheckResponse{Status: &status.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: code}, Body: "no",
		}}})
		if d.outcome != denied || d.status != wantStatus || string(d.body) != "no" {
			t.Errorf("denied with status %d: %+v, want status %d", code, d, wantStatus)
		}
	}
	if d := grpcResult(&authv3.CheckResponse{Status: &status.Status{Code: 16}}); d.outcome != denied || d.status != 403 {
		t.Errorf("denied without denied_response: %+v, want 403", d)
	}
}
