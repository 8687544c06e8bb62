package wasm

import (
	"context"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// sharedQueues are the host-wide queues of proxy_register_shared_queue
// and friends, keyed by (vm_id, name) like Envoy's. Registering a name
// again returns the same id and moves notifications to the latest
// registrant's root context.
type sharedQueues struct {
	mu     sync.Mutex
	nextID uint32
	byName map[queueName]uint32
	byID   map[uint32]*sharedQueue
}

type queueName struct{ vmID, name string }

type sharedQueue struct {
	id    uint32
	items [][]byte
	// owner is the root context proxy_on_queue_ready goes to.
	owner *rootContext
}

func (q *sharedQueues) init() {
	q.byName = map[queueName]uint32{}
	q.byID = map[uint32]*sharedQueue{}
}

func (q *sharedQueues) register(vmID, name string, owner *rootContext) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := queueName{vmID, name}
	if id, ok := q.byName[k]; ok {
		q.byID[id].owner = owner
		return id
	}
	q.nextID++
	id := q.nextID
	q.byName[k] = id
	q.byID[id] = &sharedQueue{id: id, owner: owner}
	return id
}

func (q *sharedQueues) resolve(vmID, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id, ok := q.byName[queueName{vmID, name}]
	return id, ok
}

// enqueue appends data and returns the root context to notify.
func (q *sharedQueues) enqueue(id uint32, data []byte) (*rootContext, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.byID[id]
	if sq == nil {
		return nil, false
	}
	sq.items = append(sq.items, append([]byte(nil), data...))
	return sq.owner, true
}

func (q *sharedQueues) dequeue(id uint32) ([]byte, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.byID[id]
	switch {
	case sq == nil:
		return nil, statusNotFound
	case len(sq.items) == 0:
		return nil, statusEmpty
	}
	v := sq.items[0]
	sq.items[0] = nil
	sq.items = sq.items[1:]
	return v, statusOK
}

// proxy_register_shared_queue(name_ptr, name_len, out_id) -> status.
// The caller's root context becomes the queue's registrant, even when it
// calls from a stream.
func proxyRegisterSharedQueue(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_register_shared_queue")
	name, ok := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	out := api.DecodeU32(stack[2])
	if !ok || !writableWord(m, out) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	id := inst.vm.host.queues.register(inst.vm.vmID, string(name), inst.root)
	setStatus(stack, putU32(m, out, id))
}

// proxy_resolve_shared_queue(vm_id_ptr, vm_id_len, name_ptr, name_len,
// out_id) -> OK / NOT_FOUND; an empty vm_id means the caller's own.
func proxyResolveSharedQueue(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_resolve_shared_queue")
	vmID, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	name, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	out := api.DecodeU32(stack[4])
	if !ok1 || !ok2 || !writableWord(m, out) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	vid := string(vmID)
	if vid == "" {
		vid = inst.vm.vmID
	}
	id, found := inst.vm.host.queues.resolve(vid, string(name))
	if !found {
		setStatus(stack, statusNotFound)
		return
	}
	setStatus(stack, putU32(m, out, id))
}

// proxy_enqueue_shared_queue(id, ptr, len) -> OK / NOT_FOUND. The
// registrant's proxy_on_queue_ready(root, id) runs after the current
// call (never re-entering the caller's instance while it is busy).
func proxyEnqueueSharedQueue(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_enqueue_shared_queue")
	data, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	id := api.DecodeU32(stack[0])
	owner, found := inst.vm.host.queues.enqueue(id, data)
	if !found {
		setStatus(stack, statusNotFound)
		return
	}
	if owner != nil {
		go owner.queueReady(id)
	}
	setStatus(stack, statusOK)
}

// queueReady delivers proxy_on_queue_ready to the registrant.
func (rc *rootContext) queueReady(id uint32) {
	rc.runRoot("proxy_on_queue_ready", func(inst *instance) error {
		if inst.fnQueueReady == nil {
			return nil
		}
		_, err := inst.invoke(nil, rc.id, inst.fnQueueReady, uint64(rc.id), uint64(id), 0)
		return err
	})
}

// proxy_dequeue_shared_queue(id, out_ptr, out_len) -> OK / NOT_FOUND /
// EMPTY.
func proxyDequeueSharedQueue(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_dequeue_shared_queue")
	ptrPtr, sizePtr := api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	if !writableWord(m, ptrPtr) || !writableWord(m, sizePtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	v, st := inst.vm.host.queues.dequeue(api.DecodeU32(stack[0]))
	if st != statusOK {
		setStatus(stack, st)
		return
	}
	setStatus(stack, copyOut(ctx, inst, m, v, ptrPtr, sizePtr))
}

func sharedQueueFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_register_shared_queue", ints(3), oneI32, proxyRegisterSharedQueue},
		{"proxy_resolve_shared_queue", ints(5), oneI32, proxyResolveSharedQueue},
		{"proxy_enqueue_shared_queue", ints(3), oneI32, proxyEnqueueSharedQueue},
		{"proxy_dequeue_shared_queue", ints(3), oneI32, proxyDequeueSharedQueue},
	}
}
