// The noop plugin of bench/jsoncmp in C, no libc: the same callbacks and
// host reads (request header content-type, the request body), no JSON, and
// a guest with no runtime of its own. Run end to end in place of the
// json-validation plugin, it shows what the host's side of a plugin costs
// on the real path (docs/perf.md, "Issue 16: the plugin's end-to-end
// cost"). Built with clang and wasm-ld (LLVM 14 here):
//
//	clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--allow-undefined -o noop.wasm noop.c
typedef unsigned int u32;
typedef unsigned long long u64;
#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_get_header_map_value) u32 proxy_get_header_map_value(u32 t, const char *k, u32 kl, char **v, u32 *vl);
IMPORT(proxy_get_buffer_bytes) u32 proxy_get_buffer_bytes(u32 t, u32 start, u32 len, char **v, u32 *vl);

static char heap[1 << 16];
static u32 top;
static u32 body_size[1024];

EXPORT(proxy_abi_version_0_2_1) void abi(void) {}
EXPORT(proxy_on_memory_allocate) void *alloc(u32 n) {
	u32 at = (top + 7) & ~7u;
	if (at + n > sizeof heap) at = 0; // a bump arena, reused: results are read before the next call
	top = at + n;
	return heap + at;
}
EXPORT(proxy_on_context_create) void on_create(u32 id, u32 root) { body_size[id % 1024] = 0; }
EXPORT(proxy_on_vm_start) u32 on_vm_start(u32 id, u32 n) { return 1; }
EXPORT(proxy_on_configure) u32 on_configure(u32 id, u32 n) { return 1; }
EXPORT(proxy_on_request_headers) u32 on_req_headers(u32 id, u32 n, u32 end) {
	char *v; u32 vl;
	if (proxy_get_header_map_value(0, "content-type", 12, &v, &vl) != 0) return 1;
	return 0;
}
EXPORT(proxy_on_request_body) u32 on_req_body(u32 id, u32 n, u32 end) {
	body_size[id % 1024] += n;
	if (!end) return 1;
	char *v; u32 vl;
	if (proxy_get_buffer_bytes(0, 0, body_size[id % 1024], &v, &vl) != 0) return 1;
	return 0;
}
EXPORT(proxy_on_response_headers) u32 on_resp_headers(u32 id, u32 n, u32 end) { return 0; }
EXPORT(proxy_on_response_body) u32 on_resp_body(u32 id, u32 n, u32 end) { return 0; }
EXPORT(proxy_on_log) void on_log(u32 id) {}
EXPORT(proxy_on_done) u32 on_done(u32 id) { return 1; }
EXPORT(proxy_on_delete) void on_delete(u32 id) {}
