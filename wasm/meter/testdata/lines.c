// A Proxy-Wasm plugin with DWARF, for the translation of line tables in
// debugline.go: proxy_on_request_headers runs a loop (a metering point
// inside it), calls a helper, then divides by zero on the line marked
// TRAP. Built without libc so the module stays small, by lines.sh.

#include <stddef.h>
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static unsigned char heap[1 << 16];
static uint32_t used;

EXPORT(malloc) void *malloc(size_t size) {
  void *p = &heap[used];
  used += (size + 7) & ~7u;
  return p;
}

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t c, uint32_t p) { (void)c; (void)p; }
EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t r, uint32_t s) { (void)r; (void)s; return 1; }
EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t r, uint32_t s) { (void)r; (void)s; return 1; }

static volatile int zero;

__attribute__((noinline)) static int sum(int n) {
  int total = 0;
  for (int i = 0; i < n; i++) {
    total += i * zero + 1;
  }
  return total;
}

__attribute__((noinline)) static int divide(int a) {
  return a / zero; // TRAP
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t eos) {
  (void)ctx;
  (void)eos;
  int n = sum((int)headers);
  return (uint32_t)divide(n);
}
