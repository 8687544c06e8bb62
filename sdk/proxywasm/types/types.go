// Package types holds the interfaces a plugin implements (VMContext,
// PluginContext, HttpContext, TcpContext), their no-op defaults, and the
// enumerations and errors shared by the proxywasm package.
//
// The names follow github.com/proxy-wasm/proxy-wasm-go-sdk so that plugins
// written for that SDK only need their import paths changed.
package types

import (
	"errors"
	"strconv"
)

// Action is what a stream callback returns to tell the host whether to go on
// with the stream (ActionContinue) or to hold it (ActionPause).
type Action uint32

const (
	// ActionContinue lets the host pass the current data on to the next
	// filter.
	ActionContinue Action = 0
	// ActionPause makes the host hold the current data until the plugin
	// resumes the stream (ResumeHttpRequest, ResumeHttpResponse,
	// ContinueTcpStream) or answers it locally (SendHttpResponse). For a
	// request or response body it makes the host buffer the body.
	ActionPause Action = 1
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "Continue"
	case ActionPause:
		return "Pause"
	}
	return "Action(" + strconv.FormatUint(uint64(a), 10) + ")"
}

// PeerType tells which side closed a TCP connection.
type PeerType uint32

const (
	// PeerTypeUnknown means the host does not know which side closed.
	PeerTypeUnknown PeerType = 0
	// PeerTypeLocal means the proxy closed the connection.
	PeerTypeLocal PeerType = 1
	// PeerTypeRemote means the peer closed the connection.
	PeerTypeRemote PeerType = 2
)

// String returns the peer type's name.
func (p PeerType) String() string {
	switch p {
	case PeerTypeUnknown:
		return "unknown"
	case PeerTypeLocal:
		return "local"
	case PeerTypeRemote:
		return "remote"
	}
	return "PeerType(" + strconv.FormatUint(uint64(p), 10) + ")"
}

// LogLevel is the level of a log message (proxy_log_level_t).
type LogLevel uint32

const (
	// LogLevelTrace is the most verbose level.
	LogLevelTrace LogLevel = 0
	// LogLevelDebug is for debugging output.
	LogLevelDebug LogLevel = 1
	// LogLevelInfo is for informational messages.
	LogLevelInfo LogLevel = 2
	// LogLevelWarn is for warnings.
	LogLevelWarn LogLevel = 3
	// LogLevelError is for errors.
	LogLevelError LogLevel = 4
	// LogLevelCritical is for critical errors.
	LogLevelCritical LogLevel = 5
)

// String returns the level's lower-case name.
func (l LogLevel) String() string {
	switch l {
	case LogLevelTrace:
		return "trace"
	case LogLevelDebug:
		return "debug"
	case LogLevelInfo:
		return "info"
	case LogLevelWarn:
		return "warn"
	case LogLevelError:
		return "error"
	case LogLevelCritical:
		return "critical"
	}
	return "LogLevel(" + strconv.FormatUint(uint64(l), 10) + ")"
}

// OnPluginStartStatus is the result of PluginContext.OnPluginStart.
type OnPluginStartStatus bool

const (
	// OnPluginStartStatusOK accepts the plugin configuration.
	OnPluginStartStatusOK OnPluginStartStatus = true
	// OnPluginStartStatusFailed rejects the plugin configuration; the host
	// refuses to load the plugin.
	OnPluginStartStatusFailed OnPluginStartStatus = false
)

// OnVMStartStatus is the result of VMContext.OnVMStart.
type OnVMStartStatus bool

const (
	// OnVMStartStatusOK means the VM started.
	OnVMStartStatusOK OnVMStartStatus = true
	// OnVMStartStatusFailed makes the host treat the VM start as failed.
	OnVMStartStatusFailed OnVMStartStatus = false
)

// Errors returned by the proxywasm functions, one per non-OK proxy_status_t
// value a host can return. Compare with errors.Is or ==.
var (
	// ErrorStatusNotFound is status 1 (NOT_FOUND): the header, buffer,
	// property, shared data key or queue does not exist or is not available
	// in the current callback. The proxywasm getters also return it when the
	// host answers with no data at all.
	ErrorStatusNotFound = errors.New("not found")
	// ErrorStatusBadArgument is status 2 (BAD_ARGUMENT).
	ErrorStatusBadArgument = errors.New("bad argument")
	// ErrorStatusSerializationFailure is status 3 (SERIALIZATION_FAILURE).
	ErrorStatusSerializationFailure = errors.New("serialization failure")
	// ErrorStatusParseFailure is status 4 (PARSE_FAILURE).
	ErrorStatusParseFailure = errors.New("parse failure")
	// ErrorStatusBadExpression is status 5 (BAD_EXPRESSION).
	ErrorStatusBadExpression = errors.New("bad expression")
	// ErrorStatusInvalidMemoryAccess is status 6 (INVALID_MEMORY_ACCESS).
	ErrorStatusInvalidMemoryAccess = errors.New("invalid memory access")
	// ErrorStatusEmpty is status 7 (EMPTY), e.g. a shared queue with no
	// item.
	ErrorStatusEmpty = errors.New("empty")
	// ErrorStatusCasMismatch is status 8 (CAS_MISMATCH): the shared data was
	// changed since the CAS value was read.
	ErrorStatusCasMismatch = errors.New("cas mismatch")
	// ErrorStatusResultMismatch is status 9 (RESULT_MISMATCH).
	ErrorStatusResultMismatch = errors.New("result mismatch")
	// ErrorInternalFailure is status 10 (INTERNAL_FAILURE).
	ErrorInternalFailure = errors.New("internal failure")
	// ErrorStatusBrokenConnection is status 11 (BROKEN_CONNECTION).
	ErrorStatusBrokenConnection = errors.New("broken connection")
	// ErrorUnimplemented is status 12 (UNIMPLEMENTED): the host does not
	// implement the call. Outside a Wasm build (GOOS other than wasip1)
	// every host call returns it.
	ErrorUnimplemented = errors.New("unimplemented")
)

// StatusError is the error for a status code that has no named error value.
type StatusError uint32

// Error implements error.
func (s StatusError) Error() string {
	return "unknown status code: " + strconv.FormatUint(uint64(s), 10)
}

// StatusToError maps a proxy_status_t value to nil (0, OK), one of the
// Error... values above, or a StatusError for codes it does not know.
func StatusToError(status uint32) error {
	switch status {
	case 0:
		return nil
	case 1:
		return ErrorStatusNotFound
	case 2:
		return ErrorStatusBadArgument
	case 3:
		return ErrorStatusSerializationFailure
	case 4:
		return ErrorStatusParseFailure
	case 5:
		return ErrorStatusBadExpression
	case 6:
		return ErrorStatusInvalidMemoryAccess
	case 7:
		return ErrorStatusEmpty
	case 8:
		return ErrorStatusCasMismatch
	case 9:
		return ErrorStatusResultMismatch
	case 10:
		return ErrorInternalFailure
	case 11:
		return ErrorStatusBrokenConnection
	case 12:
		return ErrorUnimplemented
	}
	return StatusError(status)
}

// GrpcStatus is a gRPC status code, as the host reports it for a gRPC call
// or stream (proxy_on_grpc_close, proxy_get_status).
type GrpcStatus uint32

// The gRPC status codes (grpc/grpc doc/statuscodes.md).
const (
	GrpcStatusOK                 GrpcStatus = 0
	GrpcStatusCanceled           GrpcStatus = 1
	GrpcStatusUnknown            GrpcStatus = 2
	GrpcStatusInvalidArgument    GrpcStatus = 3
	GrpcStatusDeadlineExceeded   GrpcStatus = 4
	GrpcStatusNotFound           GrpcStatus = 5
	GrpcStatusAlreadyExists      GrpcStatus = 6
	GrpcStatusPermissionDenied   GrpcStatus = 7
	GrpcStatusResourceExhausted  GrpcStatus = 8
	GrpcStatusFailedPrecondition GrpcStatus = 9
	GrpcStatusAborted            GrpcStatus = 10
	GrpcStatusOutOfRange         GrpcStatus = 11
	GrpcStatusUnimplemented      GrpcStatus = 12
	GrpcStatusInternal           GrpcStatus = 13
	GrpcStatusUnavailable        GrpcStatus = 14
	GrpcStatusDataLoss           GrpcStatus = 15
	GrpcStatusUnauthenticated    GrpcStatus = 16
)

var grpcStatusNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}

// String returns the code's name as gRPC spells it ("OK", "NotFound", ...).
func (s GrpcStatus) String() string {
	if int(s) < len(grpcStatusNames) {
		return grpcStatusNames[s]
	}
	return "GrpcStatus(" + strconv.FormatUint(uint64(s), 10) + ")"
}
