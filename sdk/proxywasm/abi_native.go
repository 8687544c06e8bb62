//go:build !wasip1

package proxywasm

import "unsafe"

// Outside GOOS=wasip1 there is no Proxy-Wasm host: these stand-ins for the
// "env" imports of abi_wasip1.go let the package compile, vet and unit-test
// natively. Each fails with status 12 (UNIMPLEMENTED). They exist only in
// non-wasip1 builds, so a host function missing from abi_wasip1.go is still
// a compile error in a Wasm build.

const statusUnimplemented = 12

func proxyLog(uint32, unsafe.Pointer, uint32) uint32                { return statusUnimplemented }
func proxySetTickPeriodMilliseconds(uint32) uint32                  { return statusUnimplemented }
func proxySetEffectiveContext(uint32) uint32                        { return statusUnimplemented }
func proxyDone() uint32                                             { return statusUnimplemented }
func proxyContinueStream(uint32) uint32                             { return statusUnimplemented }
func proxyCloseStream(uint32) uint32                                { return statusUnimplemented }
func proxyIncrementMetric(uint32, int64) uint32                     { return statusUnimplemented }
func proxyRecordMetric(uint32, uint64) uint32                       { return statusUnimplemented }
func proxyGetMetric(uint32, unsafe.Pointer) uint32                  { return statusUnimplemented }
func proxyEnqueueSharedQueue(uint32, unsafe.Pointer, uint32) uint32 { return statusUnimplemented }

func proxyCallForeignFunction(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyGetProperty(unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxySetProperty(unsafe.Pointer, uint32, unsafe.Pointer, uint32) uint32 {
	return statusUnimplemented
}

func proxyGetHeaderMapPairs(uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxySetHeaderMapPairs(uint32, unsafe.Pointer, uint32) uint32 { return statusUnimplemented }

func proxyGetHeaderMapValue(uint32, unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyAddHeaderMapValue(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) uint32 {
	return statusUnimplemented
}

func proxyReplaceHeaderMapValue(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) uint32 {
	return statusUnimplemented
}

func proxyRemoveHeaderMapValue(uint32, unsafe.Pointer, uint32) uint32 { return statusUnimplemented }

func proxyGetBufferBytes(uint32, uint32, uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxySetBufferBytes(uint32, uint32, uint32, unsafe.Pointer, uint32) uint32 {
	return statusUnimplemented
}

func proxySendLocalResponse(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, int32) uint32 {
	return statusUnimplemented
}

func proxyHttpCall(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyGetSharedData(unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxySetSharedData(unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32) uint32 {
	return statusUnimplemented
}

func proxyRegisterSharedQueue(unsafe.Pointer, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyResolveSharedQueue(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyDequeueSharedQueue(uint32, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyDefineMetric(uint32, unsafe.Pointer, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyGrpcCall(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyGrpcStream(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) uint32 {
	return statusUnimplemented
}

func proxyGrpcSend(uint32, unsafe.Pointer, uint32, uint32) uint32 { return statusUnimplemented }
func proxyGrpcCancel(uint32) uint32                               { return statusUnimplemented }
func proxyGrpcClose(uint32) uint32                                { return statusUnimplemented }
func proxyGetStatus(unsafe.Pointer, unsafe.Pointer, unsafe.Pointer) uint32 {
	return statusUnimplemented
}
func proxyGetLogLevel(unsafe.Pointer) uint32 { return statusUnimplemented }
