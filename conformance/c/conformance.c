// Conformance plugin in C against the raw Proxy-Wasm ABI 0.2.1: no SDK,
// only the host functions declared below and wasi-libc. Built as a WASI
// reactor by conformance/build_test.go:
//
//   clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--export=malloc
//
// The behaviour is the one every language's conformance plugin has; it
// is specified in conformance/README.md and asserted by conformance_test.go.

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LANG "c"

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

// ---- host functions (reference §1.4) --------------------------------------

IMPORT(proxy_log) uint32_t proxy_log(uint32_t level, const char *msg, size_t len);
IMPORT(proxy_get_log_level) uint32_t proxy_get_log_level(uint32_t *level);
IMPORT(proxy_get_current_time_nanoseconds) uint32_t proxy_get_current_time_nanoseconds(uint64_t *ns);
IMPORT(proxy_set_tick_period_milliseconds) uint32_t proxy_set_tick_period_milliseconds(uint32_t ms);
IMPORT(proxy_get_buffer_bytes) uint32_t proxy_get_buffer_bytes(uint32_t type, uint32_t start, uint32_t max, char **ptr, size_t *len);
IMPORT(proxy_get_buffer_status) uint32_t proxy_get_buffer_status(uint32_t type, size_t *len, uint32_t *flags);
IMPORT(proxy_set_buffer_bytes) uint32_t proxy_set_buffer_bytes(uint32_t type, uint32_t start, uint32_t size, const char *data, size_t len);
IMPORT(proxy_get_header_map_pairs) uint32_t proxy_get_header_map_pairs(uint32_t map, char **ptr, size_t *len);
IMPORT(proxy_get_header_map_value) uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t klen, char **ptr, size_t *len);
IMPORT(proxy_add_header_map_value) uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t klen, const char *val, size_t vlen);
IMPORT(proxy_replace_header_map_value) uint32_t proxy_replace_header_map_value(uint32_t map, const char *key, size_t klen, const char *val, size_t vlen);
IMPORT(proxy_remove_header_map_value) uint32_t proxy_remove_header_map_value(uint32_t map, const char *key, size_t klen);
IMPORT(proxy_get_header_map_size) uint32_t proxy_get_header_map_size(uint32_t map, size_t *size);
IMPORT(proxy_get_property) uint32_t proxy_get_property(const char *path, size_t plen, char **ptr, size_t *len);
IMPORT(proxy_set_property) uint32_t proxy_set_property(const char *path, size_t plen, const char *val, size_t vlen);
IMPORT(proxy_send_local_response) uint32_t proxy_send_local_response(uint32_t code, const char *details, size_t dlen, const char *body, size_t blen, const char *pairs, size_t plen, int32_t grpc);
IMPORT(proxy_continue_stream) uint32_t proxy_continue_stream(uint32_t stream);
IMPORT(proxy_set_effective_context) uint32_t proxy_set_effective_context(uint32_t ctx);
IMPORT(proxy_get_shared_data) uint32_t proxy_get_shared_data(const char *key, size_t klen, char **ptr, size_t *len, uint32_t *cas);
IMPORT(proxy_set_shared_data) uint32_t proxy_set_shared_data(const char *key, size_t klen, const char *val, size_t vlen, uint32_t cas);
IMPORT(proxy_register_shared_queue) uint32_t proxy_register_shared_queue(const char *name, size_t nlen, uint32_t *qid);
IMPORT(proxy_resolve_shared_queue) uint32_t proxy_resolve_shared_queue(const char *vm, size_t vlen, const char *name, size_t nlen, uint32_t *qid);
IMPORT(proxy_enqueue_shared_queue) uint32_t proxy_enqueue_shared_queue(uint32_t qid, const char *data, size_t len);
IMPORT(proxy_dequeue_shared_queue) uint32_t proxy_dequeue_shared_queue(uint32_t qid, char **ptr, size_t *len);
IMPORT(proxy_define_metric) uint32_t proxy_define_metric(uint32_t type, const char *name, size_t nlen, uint32_t *id);
IMPORT(proxy_increment_metric) uint32_t proxy_increment_metric(uint32_t id, int64_t delta);
IMPORT(proxy_record_metric) uint32_t proxy_record_metric(uint32_t id, uint64_t value);
IMPORT(proxy_get_metric) uint32_t proxy_get_metric(uint32_t id, uint64_t *value);
IMPORT(proxy_http_call) uint32_t proxy_http_call(const char *up, size_t ulen, const char *hdrs, size_t hlen, const char *body, size_t blen, const char *trls, size_t tlen, uint32_t timeout_ms, uint32_t *token);
IMPORT(proxy_call_foreign_function) uint32_t proxy_call_foreign_function(const char *name, size_t nlen, const char *args, size_t alen, char **ptr, size_t *len);

// Status codes, map, buffer and stream types used here (reference §1.5).
enum { OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8 };
enum { REQUEST_HEADERS = 0, RESPONSE_HEADERS = 2, CALL_RESPONSE_HEADERS = 6 };
enum { REQUEST_BODY = 0, RESPONSE_BODY = 1, CALL_RESPONSE_BODY = 4, VM_CONFIGURATION = 6, PLUGIN_CONFIGURATION = 7 };
enum { LOG_INFO = 2 };

// The ABI version marker and the allocator the host copies data in with
// (wasi-libc's malloc, exported by the linker flag above).
EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

// ---- helpers ----------------------------------------------------------------

static void log_info(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n >= (int)sizeof buf) n = sizeof buf - 1;
  proxy_log(LOG_INFO, buf, (size_t)n);
}

// A string literal with its length, for keys and NUL-separated paths.
#define S(lit) lit, sizeof(lit) - 1

static void add_header(uint32_t map, const char *key, const char *val, size_t vlen) {
  proxy_add_header_map_value(map, key, strlen(key), val, vlen);
}

static void add_header_str(uint32_t map, const char *key, const char *val) {
  add_header(map, key, val, strlen(val));
}

static void add_header_u64(uint32_t map, const char *key, uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  add_header_str(map, key, buf);
}

// Reads an Envoy integer property: exactly 8 bytes, little-endian.
static int property_u64(const char *path, size_t plen, uint64_t *out) {
  char *p = NULL;
  size_t n = 0;
  if (proxy_get_property(path, plen, &p, &n) != OK) return 0;
  int ok = n == 8;
  if (ok) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | (uint8_t)p[i];
    *out = v;
  }
  free(p);
  return ok;
}

// Copies a string property into a request header; absent → "<absent>".
static void forward_property(const char *header, const char *path, size_t plen) {
  char *p = NULL;
  size_t n = 0;
  if (proxy_get_property(path, plen, &p, &n) == OK) {
    add_header(REQUEST_HEADERS, header, p, n);
    free(p);
  } else {
    add_header_str(REQUEST_HEADERS, header, "<absent>");
  }
}

static void forward_property_hex(const char *header, const char *path, size_t plen) {
  char *p = NULL;
  size_t n = 0;
  if (proxy_get_property(path, plen, &p, &n) != OK) {
    add_header_str(REQUEST_HEADERS, header, "<absent>");
    return;
  }
  static const char digits[] = "0123456789abcdef";
  char *hex = malloc(2 * n + 1);
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[(uint8_t)p[i] >> 4];
    hex[2 * i + 1] = digits[(uint8_t)p[i] & 15];
  }
  add_header(REQUEST_HEADERS, header, hex, 2 * n);
  free(hex);
  free(p);
}

static uint32_t rd32(const char *p) {
  return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16 | (uint32_t)(uint8_t)p[3] << 24;
}

static void wr32(char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}

// Serializes n key/value pairs in the ABI's pair encoding (§1.6).
static char *encode_pairs(const char *const *kv, int n, size_t *out_len) {
  size_t len = 4 + 8 * (size_t)n;
  for (int i = 0; i < 2 * n; i++) len += strlen(kv[i]) + 1;
  char *buf = malloc(len), *d = buf + 4 + 8 * n;
  wr32(buf, (uint32_t)n);
  for (int i = 0; i < 2 * n; i++) {
    size_t l = strlen(kv[i]);
    wr32(buf + 4 + 4 * i, (uint32_t)l);
    memcpy(d, kv[i], l);
    d[l] = 0;
    d += l + 1;
  }
  *out_len = len;
  return buf;
}

// ---- state ------------------------------------------------------------------

static char *vm_config, *plugin_config;
static size_t vm_config_len, plugin_config_len;
static uint32_t requests_counter, ticks_gauge, body_histogram, queue_id;

// Streams paused for an http_call: token → stream context.
#define MAX_CALLOUTS 64
static struct { uint32_t token, ctx; } callouts[MAX_CALLOUTS];

// Request path per stream for on_log, which runs after the stream's
// headers were handed on.
#define MAX_STREAMS 256
static struct { uint32_t ctx; char path[128]; } streams[MAX_STREAMS];

static char *stream_path(uint32_t ctx, int create) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].ctx == ctx) return streams[i].path;
  if (!create) return NULL;
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].ctx == 0) {
      streams[i].ctx = ctx;
      streams[i].path[0] = 0;
      return streams[i].path;
    }
  return NULL;
}

// ---- callbacks --------------------------------------------------------------

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
  (void)ctx;
  (void)parent;
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
  free(vm_config);
  vm_config = NULL;
  vm_config_len = 0;
  if (size > 0) proxy_get_buffer_bytes(VM_CONFIGURATION, 0, size, &vm_config, &vm_config_len);
  log_info("vm_start root=%u vm_config=%.*s", root, (int)vm_config_len, vm_config ? vm_config : "");
  return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
  free(plugin_config);
  plugin_config = NULL;
  plugin_config_len = 0;
  if (size > 0) proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &plugin_config, &plugin_config_len);
  log_info("configure root=%u config=%.*s", root, (int)plugin_config_len, plugin_config ? plugin_config : "");
  proxy_define_metric(0, S("conformance_" LANG "_requests"), &requests_counter);
  proxy_define_metric(1, S("conformance_" LANG "_ticks"), &ticks_gauge);
  proxy_define_metric(2, S("conformance_" LANG "_body_bytes"), &body_histogram);
  proxy_register_shared_queue(S("conformance-queue"), &queue_id);
  proxy_set_tick_period_milliseconds(50);
  return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
  (void)root;
  proxy_increment_metric(ticks_gauge, 1);
}

EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root, uint32_t qid) {
  (void)root;
  char *p;
  size_t n;
  while (proxy_dequeue_shared_queue(qid, &p, &n) == OK) {
    log_info("dequeued %.*s", (int)n, p);
    free(p);
  }
}

// Shared data: increments "hits" with compare-and-swap, retrying on
// CAS_MISMATCH, and returns the new count.
static uint64_t count_hit(void) {
  for (;;) {
    char *p = NULL;
    size_t n = 0;
    uint32_t cas = 0;
    uint64_t hits = 0;
    if (proxy_get_shared_data(S("hits"), &p, &n, &cas) == OK) {
      char buf[24] = {0};
      memcpy(buf, p, n < 23 ? n : 23);
      hits = strtoull(buf, NULL, 10);
      free(p);
    }
    char buf[24];
    int len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)(hits + 1));
    if (proxy_set_shared_data(S("hits"), buf, (size_t)len, cas) != CAS_MISMATCH) return hits + 1;
  }
}

static int starts_with(const char *s, size_t n, const char *prefix) {
  size_t l = strlen(prefix);
  return n >= l && memcmp(s, prefix, l) == 0;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t num_headers, uint32_t eos) {
  (void)eos;
  char *path = NULL;
  size_t path_len = 0;
  proxy_get_header_map_value(REQUEST_HEADERS, S(":path"), &path, &path_len);
  char *saved = stream_path(ctx, 1);
  if (saved) snprintf(saved, 128, "%.*s", (int)path_len, path ? path : "");
  log_info("request_headers %.*s", (int)path_len, path ? path : "");

  if (starts_with(path, path_len, "/local")) {
    static const char *const kv[] = {"x-conf-local", LANG};
    size_t plen;
    char *pairs = encode_pairs(kv, 1, &plen);
    proxy_send_local_response(418, S("conformance local reply"), S("local reply from " LANG "\n"), pairs, plen, -1);
    free(pairs);
    free(path);
    return 1;
  }
  if (starts_with(path, path_len, "/enqueue")) {
    uint32_t qid;
    if (proxy_resolve_shared_queue(S(""), S("conformance-queue"), &qid) == OK) {
      char msg[160];
      int n = snprintf(msg, sizeof msg, LANG " %.*s", (int)path_len, path);
      proxy_enqueue_shared_queue(qid, msg, (size_t)n);
    }
  }
  if (starts_with(path, path_len, "/callout")) {
    static const char *const kv[] = {":method", "GET", ":path", "/callout-target", ":authority", "conformance-upstream"};
    size_t hlen;
    char *hdrs = encode_pairs(kv, 3, &hlen);
    uint32_t token = 0;
    uint32_t st = proxy_http_call(S("upstream"), hdrs, hlen, NULL, 0, NULL, 0, 5000, &token);
    free(hdrs);
    free(path);
    if (st != OK) {
      add_header_u64(REQUEST_HEADERS, "x-conf-callout-error", st);
      return 0;
    }
    for (int i = 0; i < MAX_CALLOUTS; i++)
      if (callouts[i].ctx == 0) {
        callouts[i].token = token;
        callouts[i].ctx = ctx;
        break;
      }
    return 1;  // paused until the callout's answer
  }
  free(path);

  // Counted before any edit, so they describe the map the callback got:
  // the pair count must equal num_headers, and the map size (Envoy: the
  // sum of key and value bytes) the sum over the pairs.
  char *pairs = NULL;
  size_t pairs_len = 0;
  proxy_get_header_map_pairs(REQUEST_HEADERS, &pairs, &pairs_len);
  uint32_t npairs = pairs_len >= 4 ? rd32(pairs) : 0;
  uint64_t pair_bytes = 0;
  for (uint32_t i = 0; i < npairs && 4 + 8 * (i + 1) <= pairs_len; i++)
    pair_bytes += rd32(pairs + 4 + 8 * i) + rd32(pairs + 8 + 8 * i);
  free(pairs);
  size_t map_size = 0;
  proxy_get_header_map_size(REQUEST_HEADERS, &map_size);

  add_header_str(REQUEST_HEADERS, "x-conf-lang", LANG);
  proxy_replace_header_map_value(REQUEST_HEADERS, S("x-conf-replace"), S("replaced"));
  proxy_remove_header_map_value(REQUEST_HEADERS, S("x-conf-remove"));
  add_header(REQUEST_HEADERS, "x-conf-vm-config", vm_config ? vm_config : "", vm_config_len);
  add_header(REQUEST_HEADERS, "x-conf-config", plugin_config ? plugin_config : "", plugin_config_len);
  add_header_u64(REQUEST_HEADERS, "x-conf-pairs", npairs);
  add_header_u64(REQUEST_HEADERS, "x-conf-pairs-bytes", pair_bytes);
  add_header_u64(REQUEST_HEADERS, "x-conf-num-headers", num_headers);
  add_header_u64(REQUEST_HEADERS, "x-conf-map-size", map_size);

  forward_property("x-conf-prop-path", S("request\0path"));
  forward_property("x-conf-prop-method", S("request\0method"));
  forward_property("x-conf-prop-protocol", S("request\0protocol"));
  forward_property("x-conf-prop-multi", S("request\0headers\0x-multi"));
  forward_property("x-conf-plugin-name", S("plugin_name"));
  forward_property("x-conf-plugin-root-id", S("plugin_root_id"));
  forward_property("x-conf-plugin-vm-id", S("plugin_vm_id"));
  forward_property_hex("x-conf-node", S("xds\0node"));
  uint64_t v;
  if (property_u64(S("source\0port"), &v)) add_header_u64(REQUEST_HEADERS, "x-conf-source-port", v);
  if (property_u64(S("request\0time"), &v)) add_header_u64(REQUEST_HEADERS, "x-conf-request-time", v);
  if (property_u64(S("connection_id"), &v)) add_header_u64(REQUEST_HEADERS, "x-conf-connection-id", v);

  proxy_set_property(S("conformance_lang"), S(LANG));
  forward_property("x-conf-set-property", S("conformance_lang"));

  uint32_t level = 99;
  proxy_get_log_level(&level);
  add_header_u64(REQUEST_HEADERS, "x-conf-log-level", level);
  uint64_t now = 0;
  proxy_get_current_time_nanoseconds(&now);
  add_header_u64(REQUEST_HEADERS, "x-conf-now", now);

  proxy_increment_metric(requests_counter, 1);
  uint64_t requests = 0;
  proxy_get_metric(requests_counter, &requests);
  add_header_u64(REQUEST_HEADERS, "x-conf-requests", requests);
  add_header_u64(REQUEST_HEADERS, "x-conf-hits", count_hit());

  // compress then uncompress through Envoy's foreign functions.
  static const char text[] = "conformance conformance conformance";
  char *z = NULL, *back = NULL;
  size_t zlen = 0, blen = 0;
  uint32_t st = proxy_call_foreign_function(S("compress"), text, sizeof text - 1, &z, &zlen);
  if (st == OK) st = proxy_call_foreign_function(S("uncompress"), z, zlen, &back, &blen);
  add_header_str(REQUEST_HEADERS, "x-conf-foreign",
                 st == OK && blen == sizeof text - 1 && memcmp(back, text, blen) == 0 ? "roundtrip" : "failed");
  free(z);
  free(back);
  add_header_u64(REQUEST_HEADERS, "x-conf-foreign-missing", proxy_call_foreign_function(S("no_such_function"), NULL, 0, &z, &zlen));
  return 0;
}

EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t ctx, uint32_t size, uint32_t eos) {
  (void)ctx;
  if (!eos) return 1;  // StopIterationAndBuffer: see the whole body at once
  size_t len = 0;
  uint32_t flags = 0;
  proxy_get_buffer_status(REQUEST_BODY, &len, &flags);
  proxy_record_metric(body_histogram, len);
  if (size > 0) proxy_set_buffer_bytes(REQUEST_BODY, 0, 0, S("[" LANG "]"));  // prepend
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t num_headers, uint32_t eos) {
  (void)ctx;
  (void)num_headers;
  (void)eos;
  add_header_str(RESPONSE_HEADERS, "x-conf-resp-lang", LANG);
  proxy_remove_header_map_value(RESPONSE_HEADERS, S("x-upstream-remove"));
  proxy_replace_header_map_value(RESPONSE_HEADERS, S("x-upstream-replace"), S("replaced-by-" LANG));
  uint64_t code;
  if (property_u64(S("response\0code"), &code)) add_header_u64(RESPONSE_HEADERS, "x-conf-resp-code", code);
  // The body changes length below, so content-length must go.
  proxy_remove_header_map_value(RESPONSE_HEADERS, S("content-length"));
  return 0;
}

EXPORT(proxy_on_response_body) uint32_t proxy_on_response_body(uint32_t ctx, uint32_t size, uint32_t eos) {
  (void)ctx;
  if (!eos) return 1;
  proxy_set_buffer_bytes(RESPONSE_BODY, size, 0, S("[" LANG " was here]\n"));  // append
  return 0;
}

EXPORT(proxy_on_http_call_response) void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t nh, uint32_t body_size, uint32_t nt) {
  (void)root;
  (void)nt;
  uint32_t ctx = 0;
  for (int i = 0; i < MAX_CALLOUTS; i++)
    if (callouts[i].ctx != 0 && callouts[i].token == token) {
      ctx = callouts[i].ctx;
      callouts[i].ctx = 0;
      break;
    }
  if (ctx == 0) return;
  char *status = NULL, *body = NULL;
  size_t status_len = 0, body_len = 0;
  proxy_get_header_map_value(CALL_RESPONSE_HEADERS, S(":status"), &status, &status_len);
  if (body_size > 0) proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, body_size, &body, &body_len);
  // Back on the paused stream: headers, then resume it.
  proxy_set_effective_context(ctx);
  add_header(REQUEST_HEADERS, "x-conf-callout-status", status ? status : "", nh ? status_len : 0);
  add_header_u64(REQUEST_HEADERS, "x-conf-callout-body-size", body_len);
  add_header_str(REQUEST_HEADERS, "x-conf-lang", LANG);
  free(status);
  free(body);
  proxy_continue_stream(0);
}

EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {
  uint64_t code = 0;
  property_u64(S("response\0code"), &code);
  char *path = stream_path(ctx, 0);
  log_info("log %s %llu", path ? path : "?", (unsigned long long)code);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
  (void)ctx;
  return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
  char *path = stream_path(ctx, 0);
  if (path) {
    for (int i = 0; i < MAX_STREAMS; i++)
      if (streams[i].ctx == ctx) streams[i].ctx = 0;
  }
}
