package types

import (
	"errors"
	"testing"
)

func TestStatusToError(t *testing.T) {
	if StatusToError(0) != nil {
		t.Fatal("OK must map to nil")
	}
	named := map[uint32]error{
		1: ErrorStatusNotFound, 2: ErrorStatusBadArgument, 7: ErrorStatusEmpty,
		8: ErrorStatusCasMismatch, 10: ErrorInternalFailure, 12: ErrorUnimplemented,
	}
	for code, want := range named {
		if got := StatusToError(code); !errors.Is(got, want) {
			t.Errorf("StatusToError(%d) = %v, want %v", code, got, want)
		}
	}
	for code := uint32(1); code <= 12; code++ {
		if _, unknown := StatusToError(code).(StatusError); unknown {
			t.Errorf("status %d has no named error", code)
		}
	}
	var se StatusError
	if !errors.As(StatusToError(77), &se) || se != 77 {
		t.Fatalf("unknown status not reported as StatusError(77)")
	}
}

func TestGrpcStatusString(t *testing.T) {
	for _, tt := range []struct {
		s    GrpcStatus
		want string
	}{
		{GrpcStatusOK, "OK"}, {GrpcStatusNotFound, "NotFound"},
		{GrpcStatusUnauthenticated, "Unauthenticated"}, {17, "GrpcStatus(17)"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("GrpcStatus(%d).String() = %q, want %q", uint32(tt.s), got, tt.want)
		}
	}
}
