package wasm

import (
	"context"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// sharedData is the host-wide key-value store of proxy_get_shared_data /
// proxy_set_shared_data, partitioned by vm_id like Envoy's, so every
// instance (and every plugin) with the same vm_id sees the same values.
// Values are never mutated in place, so a reader may use one after
// unlocking.
type sharedData struct {
	mu   sync.Mutex
	cas  uint32 // last cas handed out; never 0 after the first set
	byVM map[string]map[string]sharedValue
}

type sharedValue struct {
	value []byte
	cas   uint32
}

func (s *sharedData) init() { s.byVM = map[string]map[string]sharedValue{} }

// nextCas returns a new non-zero cas (cpp-host's counter starts at 1 and
// skips 0 on wrap-around, since 0 means "unconditional").
func (s *sharedData) nextCas() uint32 {
	s.cas++
	if s.cas == 0 {
		s.cas++
	}
	return s.cas
}

func (s *sharedData) get(vmID string, key []byte) (sharedValue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byVM[vmID][string(key)]
	return v, ok
}

// set stores value unless cas is non-zero and differs from the current
// entry's (CAS_MISMATCH). A cas for a missing key still sets it, as in
// cpp-host.
func (s *sharedData) set(vmID string, key, value []byte, cas uint32) status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byVM[vmID]
	if m == nil {
		m = map[string]sharedValue{}
		s.byVM[vmID] = m
	}
	if cur, ok := m[string(key)]; ok && cas != 0 && cas != cur.cas {
		return statusCasMismatch
	}
	m[string(key)] = sharedValue{value: append([]byte(nil), value...), cas: s.nextCas()}
	return statusOK
}

// proxy_get_shared_data(key_ptr, key_len, out_ptr, out_len, out_cas) ->
// OK / NOT_FOUND.
func proxyGetSharedData(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_shared_data")
	key, ok := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	casPtr := api.DecodeU32(stack[4])
	if !writableWord(m, casPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	v, found := inst.vm.host.shared.get(inst.vm.vmID, key)
	if !found {
		setStatus(stack, statusNotFound)
		return
	}
	if st := copyOut(ctx, inst, m, v.value, api.DecodeU32(stack[2]), api.DecodeU32(stack[3])); st != statusOK {
		setStatus(stack, st)
		return
	}
	setStatus(stack, putU32(m, casPtr, v.cas))
}

// proxy_set_shared_data(key_ptr, key_len, value_ptr, value_len, cas) ->
// OK / CAS_MISMATCH.
func proxySetSharedData(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_set_shared_data")
	key, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	value, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	if !ok1 || !ok2 {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	setStatus(stack, inst.vm.host.shared.set(inst.vm.vmID, key, value, api.DecodeU32(stack[4])))
}

func sharedDataFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_get_shared_data", ints(5), oneI32, proxyGetSharedData},
		{"proxy_set_shared_data", ints(5), oneI32, proxySetSharedData},
	}
}
