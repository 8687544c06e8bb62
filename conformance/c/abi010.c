// A tiny conformance plugin in C for Proxy-Wasm ABI 0.1.0: the version
// marker proxy_abi_version_0_1_0, 2-argument header callbacks (no
// end_of_stream), and the four 0.1.0-only host functions:
// proxy_get_configuration, proxy_continue_request, proxy_continue_response
// and proxy_clear_route_cache. Built like conformance.c; asserted by
// TestABI010 in conformance/raw_test.go.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))
#define S(lit) lit, sizeof(lit) - 1

IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char *msg, size_t len);
IMPORT(proxy_get_configuration) uint32_t proxy_get_configuration(char **ptr, size_t *len);
IMPORT(proxy_get_header_map_value) uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t klen, char **ptr, size_t *len);
IMPORT(proxy_add_header_map_value) uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t klen, const char *val, size_t vlen);
IMPORT(proxy_continue_request) uint32_t proxy_continue_request(void);
IMPORT(proxy_continue_response) uint32_t proxy_continue_response(void);
IMPORT(proxy_clear_route_cache) uint32_t proxy_clear_route_cache(void);

enum { REQUEST_HEADERS = 0, RESPONSE_HEADERS = 2 };

EXPORT(proxy_abi_version_0_1_0) void proxy_abi_version_0_1_0(void) {}

static char vm_config[128], plugin_config[128];

// proxy_get_configuration: the VM configuration in on_vm_start, the
// plugin configuration in on_configure.
static void configuration(char *out) {
  char *p = NULL;
  size_t n = 0;
  uint32_t st = proxy_get_configuration(&p, &n);
  snprintf(out, 128, "%u %.*s", st, (int)n, p ? p : "");
  free(p);
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
  (void)ctx;
  (void)parent;
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  (void)root;
  (void)size;
  configuration(vm_config);
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  (void)root;
  (void)size;
  configuration(plugin_config);
  return 1;
}

static void add(uint32_t map, const char *key, const char *val) {
  proxy_add_header_map_value(map, key, strlen(key), val, strlen(val));
}

static void add_u32(uint32_t map, const char *key, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "%u", v);
  add(map, key, buf);
}

// Pauses the request (1 = StopIteration) and resumes it with
// proxy_continue_request; Envoy runs the continuation after the callback.
EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t num_headers) {
  (void)ctx;
  add_u32(REQUEST_HEADERS, "x-conf-num-headers", num_headers);
  add(REQUEST_HEADERS, "x-conf-vm-config", vm_config);
  add(REQUEST_HEADERS, "x-conf-config", plugin_config);
  // A missing header is OK with an empty value in 0.1.0 (NOT_FOUND later).
  char *p = NULL;
  size_t n = 99;
  uint32_t st = proxy_get_header_map_value(REQUEST_HEADERS, S("x-no-such-header"), &p, &n);
  char buf[32];
  snprintf(buf, sizeof buf, "%u %zu", st, n);
  free(p);
  add(REQUEST_HEADERS, "x-conf-missing", buf);
  add_u32(REQUEST_HEADERS, "x-conf-clear-route-cache", proxy_clear_route_cache());
  add_u32(REQUEST_HEADERS, "x-conf-continue-request", proxy_continue_request());
  return 1;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t num_headers) {
  (void)ctx;
  (void)num_headers;
  add(RESPONSE_HEADERS, "x-conf-abi", "0.1.0");
  add_u32(RESPONSE_HEADERS, "x-conf-continue-response", proxy_continue_response());
  return 1;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
  (void)ctx;
  return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) { (void)ctx; }
