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
IMPORT(proxy_get_status) uint32_t proxy_get_status(uint32_t *code, char **ptr, size_t *len);
IMPORT(proxy_done) uint32_t proxy_done(void);
IMPORT(proxy_close_stream) uint32_t proxy_close_stream(uint32_t stream);
IMPORT(proxy_set_header_map_pairs) uint32_t proxy_set_header_map_pairs(uint32_t map, const char *ptr, size_t len);
IMPORT(proxy_grpc_call) uint32_t proxy_grpc_call(const char *up, size_t ulen, const char *svc, size_t slen, const char *method, size_t mlen, const char *md, size_t mdlen, const char *msg, size_t msglen, uint32_t timeout_ms, uint32_t *token);
IMPORT(proxy_grpc_stream) uint32_t proxy_grpc_stream(const char *up, size_t ulen, const char *svc, size_t slen, const char *method, size_t mlen, const char *md, size_t mdlen, uint32_t *token);
IMPORT(proxy_grpc_send) uint32_t proxy_grpc_send(uint32_t token, const char *msg, size_t len, uint32_t end_stream);
IMPORT(proxy_grpc_cancel) uint32_t proxy_grpc_cancel(uint32_t token);
IMPORT(proxy_grpc_close) uint32_t proxy_grpc_close(uint32_t token);
// Envoy extras (reference §1.4 "Envoy extras") and the emscripten/pthread
// helpers Envoy links for C++ modules.
IMPORT(envoy_resolve_dns) uint32_t envoy_resolve_dns(const char *addr, size_t len, uint32_t *token);
IMPORT(emscripten_notify_memory_growth) void emscripten_notify_memory_growth(uint32_t index);
IMPORT(pthread_equal) uint32_t pthread_equal(uint32_t a, uint32_t b);

// Status codes, map, buffer and stream types used here (reference §1.5).
enum { OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8 };
enum { REQUEST_HEADERS = 0, REQUEST_TRAILERS = 1, RESPONSE_HEADERS = 2, RESPONSE_TRAILERS = 3, GRPC_INITIAL_METADATA = 4, GRPC_TRAILING_METADATA = 5, CALL_RESPONSE_HEADERS = 6 };
enum { REQUEST_BODY = 0, RESPONSE_BODY = 1, CALL_RESPONSE_BODY = 4, GRPC_MESSAGE = 5, VM_CONFIGURATION = 6, PLUGIN_CONFIGURATION = 7, CALL_DATA = 8 };
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

// Streams paused for an asynchronous answer: (kind, token) → stream
// context, with the events seen so far (gRPC) to hand on when it resumes.
enum { HTTP_CALL = 1, GRPC = 2, DNS = 3 };
#define MAX_CALLOUTS 64
static struct { uint32_t kind, token, ctx; char events[512]; } callouts[MAX_CALLOUTS];

static int pend(uint32_t kind, uint32_t token, uint32_t ctx) {
  for (int i = 0; i < MAX_CALLOUTS; i++)
    if (callouts[i].ctx == 0) {
      callouts[i].kind = kind;
      callouts[i].token = token;
      callouts[i].ctx = ctx;
      callouts[i].events[0] = 0;
      return i;
    }
  return -1;
}

static int pending(uint32_t kind, uint32_t token) {
  for (int i = 0; i < MAX_CALLOUTS; i++)
    if (callouts[i].ctx != 0 && callouts[i].kind == kind && callouts[i].token == token) return i;
  return -1;
}

static void event(int i, const char *fmt, ...) {
  size_t used = strlen(callouts[i].events);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(callouts[i].events + used, sizeof callouts[i].events - used, fmt, ap);
  va_end(ap);
}

// Root contexts (parent 0), told apart from streams in on_done/on_delete.
#define MAX_ROOTS 8
static uint32_t roots[MAX_ROOTS];

static int is_root(uint32_t ctx) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (roots[i] == ctx) return 1;
  return 0;
}

static uint32_t declare_status = 99;

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
  if (parent != 0) return;
  for (int i = 0; i < MAX_ROOTS; i++)
    if (roots[i] == 0) {
      roots[i] = ctx;
      return;
    }
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
  // declare_property(DeclarePropertyArguments{name: "conf_ro", readonly:
  // true, type: String}): conf_ro can then be set once per stream.
  static const char decl[] = "\x0a\x07" "conf_ro" "\x10\x01\x18\x01";
  char *out = NULL;
  size_t out_len = 0;
  declare_status = proxy_call_foreign_function(S("declare_property"), decl, sizeof decl - 1, &out, &out_len);
  free(out);
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

// ---- the raw-ABI areas (C and Rust only; conformance/README.md) -----------

static const char health_request[] = "\x0a\x04" "conf";  // HealthCheckRequest{service: "conf"}

static void hex_event(int i, const char *p, size_t n) {
  for (size_t k = 0; k < n; k++) event(i, "%02x", (uint8_t)p[k]);
}

// Appends "k=v" for every pair of a map to the callout's events.
static void pairs_event(int i, uint32_t map) {
  char *pairs = NULL;
  size_t len = 0;
  proxy_get_header_map_pairs(map, &pairs, &len);
  uint32_t n = len >= 4 ? rd32(pairs) : 0;
  const char *d = pairs + 4 + 8 * n;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t kl = rd32(pairs + 4 + 8 * k), vl = rd32(pairs + 8 + 8 * k);
    // Values only for the test's own x- keys (others vary: date, …).
    if (kl >= 2 && memcmp(d, "x-", 2) == 0) event(i, " %.*s=%.*s", (int)kl, d, (int)vl, d + kl + 1);
    else event(i, " %.*s", (int)kl, d);
    d += kl + vl + 2;
  }
  free(pairs);
}

// Resumes a stream paused for callout i with its events in a header.
static void resume(int i, const char *header) {
  uint32_t ctx = callouts[i].ctx;
  callouts[i].ctx = 0;
  proxy_set_effective_context(ctx);
  add_header_str(REQUEST_HEADERS, header, callouts[i].events);
  proxy_continue_stream(0);
}

// Request headers of the raw-ABI areas; -1 for other paths.
static int raw_request_headers(uint32_t ctx, const char *path, size_t path_len) {
  char *out = NULL;
  size_t out_len = 0;
  if (starts_with(path, path_len, "/setpairs")) {
    // proxy_set_header_map_pairs: the whole map again, without
    // x-conf-remove, with x-conf-set-pairs added.
    char *pairs = NULL;
    size_t len = 0;
    proxy_get_header_map_pairs(REQUEST_HEADERS, &pairs, &len);
    uint32_t n = len >= 4 ? rd32(pairs) : 0;
    const char **kv = malloc(sizeof(char *) * 2 * (n + 1));
    int m = 0;
    const char *d = pairs + 4 + 8 * n;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t kl = rd32(pairs + 4 + 8 * k), vl = rd32(pairs + 8 + 8 * k);
      if (strcmp(d, "x-conf-remove") != 0) {
        kv[2 * m] = d;
        kv[2 * m + 1] = d + kl + 1;
        m++;
      }
      d += kl + vl + 2;
    }
    kv[2 * m] = "x-conf-set-pairs";
    kv[2 * m + 1] = LANG;
    size_t elen;
    char *enc = encode_pairs(kv, m + 1, &elen);
    uint32_t st = proxy_set_header_map_pairs(REQUEST_HEADERS, enc, elen);
    free(enc);
    free(kv);
    free(pairs);
    add_header_u64(REQUEST_HEADERS, "x-conf-set-pairs-status", st);
    return 0;
  }
  if (starts_with(path, path_len, "/status")) {
    // An http_call to a cluster whose endpoint refuses connections, or
    // to an upstream that resets the stream after the headers; the reply
    // callback reads proxy_get_status.
    int reset = starts_with(path, path_len, "/status-reset");
    static const char *const refused[] = {":method", "GET", ":path", "/refused", ":authority", "refused"};
    static const char *const midbody[] = {":method", "GET", ":path", "/reset-midbody", ":authority", "conformance-upstream"};
    size_t hlen;
    char *hdrs = encode_pairs(reset ? midbody : refused, 3, &hlen);
    uint32_t token = 0;
    uint32_t st = reset ? proxy_http_call(S("upstream"), hdrs, hlen, NULL, 0, NULL, 0, 5000, &token)
                        : proxy_http_call(S("refused"), hdrs, hlen, NULL, 0, NULL, 0, 5000, &token);
    free(hdrs);
    if (st != OK) {
      add_header_u64(REQUEST_HEADERS, "x-conf-callout-error", st);
      return 0;
    }
    pend(HTTP_CALL, token, ctx);
    return 1;
  }
  if (starts_with(path, path_len, "/close")) {
    log_info("close_stream %u", proxy_close_stream(0));
    return 1;
  }
  if (starts_with(path, path_len, "/grpc-call")) {
    static const char *const md[] = {"x-caller", LANG};
    size_t mdlen;
    char *mdp = encode_pairs(md, 1, &mdlen);
    uint32_t token = 0, other = 0;
    uint32_t st = proxy_grpc_call(S("grpc"), S("grpc.health.v1.Health"), S("Check"), mdp, mdlen, health_request, sizeof health_request - 1, 5000, &token);
    // A second call cancelled at once (no callback follows), a third closed
    // (for a call, the same as cancel); statuses of the misuses.
    char misc[128];
    uint32_t c1 = proxy_grpc_call(S("grpc"), S("grpc.health.v1.Health"), S("Check"), mdp, mdlen, health_request, sizeof health_request - 1, 5000, &other);
    uint32_t cancel = proxy_grpc_cancel(other), again = proxy_grpc_cancel(other);
    uint32_t send_call = proxy_grpc_send(token, health_request, sizeof health_request - 1, 0);
    uint32_t c2 = proxy_grpc_call(S("grpc"), S("grpc.health.v1.Health"), S("Check"), mdp, mdlen, health_request, sizeof health_request - 1, 5000, &other);
    uint32_t close_call = proxy_grpc_close(other);
    snprintf(misc, sizeof misc, "call=%u low_bits=%u cancel=%u cancel_again=%u send_on_call=%u close_call=%u", c1 | c2, token & 3, cancel, again, send_call, close_call);
    add_header_str(REQUEST_HEADERS, "x-conf-grpc-misc", misc);
    free(mdp);
    if (st != OK) {
      add_header_u64(REQUEST_HEADERS, "x-conf-grpc-error", st);
      return 0;
    }
    pend(GRPC, token, ctx);
    return 1;
  }
  if (starts_with(path, path_len, "/grpc-stream")) {
    static const char *const md[] = {"x-caller", LANG};
    size_t mdlen;
    char *mdp = encode_pairs(md, 1, &mdlen);
    uint32_t token = 0, other = 0;
    uint32_t st = proxy_grpc_stream(S("grpc"), S("grpc.health.v1.Health"), S("Watch"), mdp, mdlen, &token);
    if (st != OK) {
      free(mdp);
      add_header_u64(REQUEST_HEADERS, "x-conf-grpc-error", st);
      return 0;
    }
    int i = pend(GRPC, token, ctx);
    uint32_t sent = proxy_grpc_send(token, health_request, sizeof health_request - 1, 0);
    uint32_t closed = proxy_grpc_close(token);  // half-close
    uint32_t after = proxy_grpc_send(token, health_request, sizeof health_request - 1, 0);
    // Another stream, cancelled at once: no callback follows.
    proxy_grpc_stream(S("grpc"), S("grpc.health.v1.Health"), S("Watch"), mdp, mdlen, &other);
    uint32_t cancel = proxy_grpc_cancel(other);
    free(mdp);
    event(i, "low_bits=%u send=%u close=%u send_after_close=%u cancel=%u;", token & 3, sent, closed, after, cancel);
    return 1;
  }
  if (starts_with(path, path_len, "/dns")) {
    uint32_t token = 0;
    uint32_t st = envoy_resolve_dns(S("localhost"), &token);
    if (st != OK) {
      add_header_u64(REQUEST_HEADERS, "x-conf-dns-error", st);
      return 0;
    }
    pend(DNS, token, ctx);
    return 1;
  }
  if (starts_with(path, path_len, "/foreign-more")) {
    add_header_u64(REQUEST_HEADERS, "x-conf-declare", declare_status);
    uint32_t s1 = proxy_set_property(S("conf_ro"), S("one"));
    uint32_t s2 = proxy_set_property(S("conf_ro"), S("two"));
    char buf[64];
    snprintf(buf, sizeof buf, "%u %u", s1, s2);
    add_header_str(REQUEST_HEADERS, "x-conf-readonly", buf);
    forward_property("x-conf-readonly-value", S("conf_ro"));
    // SetEnvoyFilterStateArguments{path, value}
    static const char fs[] = "\x0a\x17" "envoy.tcp_proxy.cluster" "\x12\x06" "conf-" LANG;
    add_header_u64(REQUEST_HEADERS, "x-conf-filter-state-status", proxy_call_foreign_function(S("set_envoy_filter_state"), S(fs), &out, &out_len));
    free(out);
    forward_property("x-conf-filter-state", S("filter_state\0envoy.tcp_proxy.cluster"));
    // A changed header picks another route once the cache is cleared.
    add_header_str(REQUEST_HEADERS, "x-conf-route", "rerouted");
    add_header_u64(REQUEST_HEADERS, "x-conf-clear-route-cache", proxy_call_foreign_function(S("clear_route_cache"), NULL, 0, &out, &out_len));
    free(out);
    return 0;
  }
  if (starts_with(path, path_len, "/misc")) {
    char buf[64];
    snprintf(buf, sizeof buf, "%u %u", pthread_equal(7, 7), pthread_equal(7, 8));
    add_header_str(REQUEST_HEADERS, "x-conf-pthread-equal", buf);
    emscripten_notify_memory_growth(0);
    add_header_u64(REQUEST_HEADERS, "x-conf-done-stream", proxy_done());
    return 0;
  }
  return -1;
}

EXPORT(proxy_on_grpc_receive_initial_metadata) void proxy_on_grpc_receive_initial_metadata(uint32_t root, uint32_t token, uint32_t n) {
  (void)root;
  int i = pending(GRPC, token);
  if (i < 0) return;
  event(i, "initial(%u", n);
  pairs_event(i, GRPC_INITIAL_METADATA);
  event(i, ");");
}

EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(uint32_t root, uint32_t token, uint32_t size) {
  (void)root;
  int i = pending(GRPC, token);
  if (i < 0) return;
  char *msg = NULL;
  size_t len = 0;
  proxy_get_buffer_bytes(GRPC_MESSAGE, 0, size, &msg, &len);
  event(i, "message(");
  hex_event(i, msg, len);
  event(i, ");");
  free(msg);
  if ((token & 3) == 1) {  // a call: its one answer ends it
    uint32_t code = 99;
    char *m = NULL;
    size_t ml = 0;
    proxy_get_status(&code, &m, &ml);
    event(i, "status(%u %.*s)", code, (int)ml, m ? m : "");
    free(m);
    resume(i, "x-conf-grpc-events");
  }
}

EXPORT(proxy_on_grpc_receive_trailing_metadata) void proxy_on_grpc_receive_trailing_metadata(uint32_t root, uint32_t token, uint32_t n) {
  (void)root;
  int i = pending(GRPC, token);
  if (i < 0) return;
  event(i, "trailing(%u", n);
  pairs_event(i, GRPC_TRAILING_METADATA);
  event(i, ");");
}

EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(uint32_t root, uint32_t token, uint32_t code) {
  (void)root;
  int i = pending(GRPC, token);
  if (i < 0) {
    log_info("grpc_close for unknown token %u", token);
    return;
  }
  uint32_t st = 99;
  char *m = NULL;
  size_t ml = 0;
  proxy_get_status(&st, &m, &ml);
  event(i, "close(%u status=%u %.*s)", code, st, (int)ml, m ? m : "");
  free(m);
  resume(i, "x-conf-grpc-events");
}

EXPORT(envoy_on_resolve_dns) void envoy_on_resolve_dns(uint32_t root, uint32_t token, uint32_t size) {
  (void)root;
  int i = pending(DNS, token);
  if (i < 0) return;
  char *data = NULL;
  size_t len = 0;
  if (size > 0) proxy_get_buffer_bytes(CALL_DATA, 0, size, &data, &len);
  // [u32 n][n × u32 ttl][n NUL-terminated addresses]
  uint32_t n = len >= 4 ? rd32(data) : 0;
  const char *a = data + 4 + 4 * n;
  for (uint32_t k = 0; k < n && a < data + len; k++) {
    event(i, "%s%s", k ? "," : "", a);
    a += strlen(a) + 1;
  }
  free(data);
  resume(i, "x-conf-dns");
}

EXPORT(proxy_on_request_trailers) uint32_t proxy_on_request_trailers(uint32_t ctx, uint32_t n) {
  (void)ctx;
  char *v = NULL;
  size_t vl = 0;
  proxy_get_header_map_value(REQUEST_TRAILERS, S("x-conf-req-trailer"), &v, &vl);
  size_t size = 0;
  proxy_get_header_map_size(REQUEST_TRAILERS, &size);
  char buf[160];
  snprintf(buf, sizeof buf, "n=%u value=%.*s size=%zu", n, (int)vl, v ? v : "", size);
  free(v);
  add_header_str(REQUEST_TRAILERS, "x-conf-trailer-seen", buf);
  add_header_str(REQUEST_TRAILERS, "x-conf-trailer-lang", LANG);
  return 0;
}

EXPORT(proxy_on_response_trailers) uint32_t proxy_on_response_trailers(uint32_t ctx, uint32_t n) {
  (void)ctx;
  char buf[32];
  snprintf(buf, sizeof buf, "%u", n);
  add_header_str(RESPONSE_TRAILERS, "x-conf-resp-trailer-n", buf);
  add_header_str(RESPONSE_TRAILERS, "x-conf-resp-trailer", LANG);
  proxy_replace_header_map_value(RESPONSE_TRAILERS, S("x-upstream-trailer"), S("replaced-by-" LANG));
  return 0;
}

// Called by no host for HTTP/1 (Envoy: HTTP/2 METADATA frames only) and,
// for foreign functions, by no host at all: a call would show in the log.
EXPORT(proxy_on_request_metadata) uint32_t proxy_on_request_metadata(uint32_t ctx, uint32_t n) {
  log_info("unexpected on_request_metadata %u %u", ctx, n);
  return 0;
}

EXPORT(proxy_on_response_metadata) uint32_t proxy_on_response_metadata(uint32_t ctx, uint32_t n) {
  log_info("unexpected on_response_metadata %u %u", ctx, n);
  return 0;
}

EXPORT(proxy_on_foreign_function) void proxy_on_foreign_function(uint32_t root, uint32_t id, uint32_t size) {
  log_info("unexpected on_foreign_function %u %u %u", root, id, size);
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
    pend(HTTP_CALL, token, ctx);
    return 1;  // paused until the callout's answer
  }
  int action = raw_request_headers(ctx, path, path_len);
  free(path);
  if (action >= 0) return (uint32_t)action;

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
  if (!eos) return 1;
  proxy_set_buffer_bytes(RESPONSE_BODY, size, 0, S("[" LANG " was here]\n"));  // append
  char *path = stream_path(ctx, 0);
  // Trailers created from the body callback at end of stream.
  if (path && strncmp(path, "/trailers-new", 13) == 0) add_header_str(RESPONSE_TRAILERS, "x-conf-created-trailer", LANG);
  return 0;
}

EXPORT(proxy_on_http_call_response) void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t nh, uint32_t body_size, uint32_t nt) {
  (void)root;
  (void)nt;
  int i = pending(HTTP_CALL, token);
  if (i < 0) return;
  uint32_t ctx = callouts[i].ctx;
  callouts[i].ctx = 0;
  uint32_t code = 99;
  char *msg = NULL;
  size_t msg_len = 0;
  proxy_get_status(&code, &msg, &msg_len);
  char *status = NULL, *body = NULL;
  size_t status_len = 0, body_len = 0;
  proxy_get_header_map_value(CALL_RESPONSE_HEADERS, S(":status"), &status, &status_len);
  if (body_size > 0) proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, body_size, &body, &body_len);
  // Back on the paused stream: headers, then resume it.
  proxy_set_effective_context(ctx);
  add_header(REQUEST_HEADERS, "x-conf-callout-status", status ? status : "", nh ? status_len : 0);
  add_header_u64(REQUEST_HEADERS, "x-conf-callout-body-size", body_len);
  add_header_str(REQUEST_HEADERS, "x-conf-lang", LANG);
  char buf[160];
  snprintf(buf, sizeof buf, "%u %.*s", code, (int)msg_len, msg ? msg : "");
  add_header_u64(REQUEST_HEADERS, "x-conf-callout-headers", nh);
  add_header_str(REQUEST_HEADERS, "x-conf-get-status", buf);
  free(msg);
  free(status);
  free(body);
  proxy_continue_stream(0);
}

// ---- TCP: a network filter ahead of tcp_proxy --------------------------------

enum { DOWNSTREAM_DATA = 2, UPSTREAM_DATA = 3 };

EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t ctx) {
  log_info("tcp new %u", ctx);
  return 0;
}

// Reads what the client sent and prepends a marker to it.
EXPORT(proxy_on_downstream_data) uint32_t proxy_on_downstream_data(uint32_t ctx, uint32_t size, uint32_t eos) {
  if (size == 0) return 0;
  char *data = NULL;
  size_t n = 0;
  proxy_get_buffer_bytes(DOWNSTREAM_DATA, 0, size, &data, &n);
  log_info("tcp down %u %u %.*s", ctx, eos, (int)n, data ? data : "");
  free(data);
  proxy_set_buffer_bytes(DOWNSTREAM_DATA, 0, 0, S("[" LANG ">]"));  // prepend
  return 0;
}

// Appends a marker to each chunk the upstream sends back.
EXPORT(proxy_on_upstream_data) uint32_t proxy_on_upstream_data(uint32_t ctx, uint32_t size, uint32_t eos) {
  (void)ctx;
  (void)eos;
  if (size > 0) proxy_set_buffer_bytes(UPSTREAM_DATA, size, 0, S("[<" LANG "]"));  // append
  return 0;
}

EXPORT(proxy_on_downstream_connection_close) void proxy_on_downstream_connection_close(uint32_t ctx, uint32_t peer) {
  log_info("tcp downstream close %u %u", ctx, peer);
}

EXPORT(proxy_on_upstream_connection_close) void proxy_on_upstream_connection_close(uint32_t ctx, uint32_t peer) {
  log_info("tcp upstream close %u %u", ctx, peer);
}

EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {
  uint64_t code = 0;
  property_u64(S("response\0code"), &code);
  char *path = stream_path(ctx, 0);
  log_info("log %s %llu", path ? path : "?", (unsigned long long)code);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
  char *path = stream_path(ctx, 0);
  if (is_root(ctx)) {
    log_info("root_done %u", ctx);
  } else if (path && starts_with(path, strlen(path), "/lifecycle")) {
    log_info("done %s", path);
  }
  return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
  char *path = stream_path(ctx, 0);
  if (is_root(ctx)) log_info("root_delete %u", ctx);
  if (path && starts_with(path, strlen(path), "/lifecycle")) log_info("delete %s", path);
  if (path) {
    for (int i = 0; i < MAX_STREAMS; i++)
      if (streams[i].ctx == ctx) streams[i].ctx = 0;
  }
}
