//! Conformance plugin in Rust against the raw Proxy-Wasm ABI 0.2.1: no
//! crates and no SDK, only std and the host functions declared below.
//! Built by conformance/build_test.go with Debian's rustc and
//! libstd-rust-dev-wasm32:
//!
//!   rustc --edition 2021 --target wasm32-wasi --crate-type cdylib -O
//!
//! The behaviour is the one every language's conformance plugin has; it is
//! specified in conformance/README.md and asserted by conformance_test.go.

use std::cell::RefCell;
use std::collections::HashMap;

const LANG: &str = "rust";

// Status codes, map, buffer and stream types used here (reference §1.5).
const OK: u32 = 0;
const CAS_MISMATCH: u32 = 8;
const REQUEST_HEADERS: u32 = 0;
const REQUEST_TRAILERS: u32 = 1;
const RESPONSE_HEADERS: u32 = 2;
const RESPONSE_TRAILERS: u32 = 3;
const CALL_RESPONSE_HEADERS: u32 = 6;
const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;
const CALL_RESPONSE_BODY: u32 = 4;
const VM_CONFIGURATION: u32 = 6;
const PLUGIN_CONFIGURATION: u32 = 7;
const CALL_DATA: u32 = 8;
const LOG_INFO: u32 = 2;

// Host functions (reference §1.4). Pointers and sizes are i32 on wasm32.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, msg: *const u8, len: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(ns: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
    fn proxy_get_buffer_bytes(t: u32, start: u32, max: u32, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_get_buffer_status(t: u32, len: *mut usize, flags: *mut u32) -> u32;
    fn proxy_set_buffer_bytes(t: u32, start: u32, size: u32, data: *const u8, len: usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_get_header_map_value(map: u32, key: *const u8, klen: usize, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_add_header_map_value(map: u32, key: *const u8, klen: usize, val: *const u8, vlen: usize) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: *const u8, klen: usize, val: *const u8, vlen: usize) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, klen: usize) -> u32;
    fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    fn proxy_get_property(path: *const u8, plen: usize, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, plen: usize, val: *const u8, vlen: usize) -> u32;
    fn proxy_send_local_response(code: u32, details: *const u8, dlen: usize, body: *const u8, blen: usize, pairs: *const u8, plen: usize, grpc: i32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_effective_context(ctx: u32) -> u32;
    fn proxy_get_shared_data(key: *const u8, klen: usize, ptr: *mut *mut u8, len: *mut usize, cas: *mut u32) -> u32;
    fn proxy_set_shared_data(key: *const u8, klen: usize, val: *const u8, vlen: usize, cas: u32) -> u32;
    fn proxy_register_shared_queue(name: *const u8, nlen: usize, qid: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(vm: *const u8, vlen: usize, name: *const u8, nlen: usize, qid: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(qid: u32, data: *const u8, len: usize) -> u32;
    fn proxy_dequeue_shared_queue(qid: u32, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_define_metric(t: u32, name: *const u8, nlen: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
    fn proxy_http_call(up: *const u8, ulen: usize, hdrs: *const u8, hlen: usize, body: *const u8, blen: usize, trls: *const u8, tlen: usize, timeout_ms: u32, token: *mut u32) -> u32;
    fn proxy_call_foreign_function(name: *const u8, nlen: usize, args: *const u8, alen: usize, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_done() -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_set_header_map_pairs(map: u32, ptr: *const u8, len: usize) -> u32;
    // Envoy extras and the emscripten/pthread helpers Envoy links.
    fn envoy_resolve_dns(addr: *const u8, len: usize, token: *mut u32) -> u32;
    fn emscripten_notify_memory_growth(index: u32);
    fn pthread_equal(a: u32, b: u32) -> u32;
}

/// The ABI version marker: its presence as an export is what counts.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The allocator the host copies data in with. The memory is handed over
/// as a Vec's buffer of exactly `size` bytes; `take` turns it back into a
/// Vec so Rust frees it.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

// ---- helpers ----------------------------------------------------------------

fn log(msg: &str) {
    unsafe { proxy_log(LOG_INFO, msg.as_ptr(), msg.len()) };
}

/// Calls a host function that hands back (ptr, len) and returns the bytes.
fn fetch(f: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Vec<u8>, u32> {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let st = f(&mut ptr, &mut len);
    if st != OK {
        return Err(st);
    }
    Ok(take(ptr, len))
}

fn header(map: u32, key: &str) -> Option<Vec<u8>> {
    fetch(|p, l| unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), p, l) }).ok()
}

fn add_header(map: u32, key: &str, val: &[u8]) {
    unsafe { proxy_add_header_map_value(map, key.as_ptr(), key.len(), val.as_ptr(), val.len()) };
}

fn replace_header(map: u32, key: &str, val: &str) {
    unsafe { proxy_replace_header_map_value(map, key.as_ptr(), key.len(), val.as_ptr(), val.len()) };
}

fn remove_header(map: u32, key: &str) {
    unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) };
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    let joined = path.join("\0");
    fetch(|p, l| unsafe { proxy_get_property(joined.as_ptr(), joined.len(), p, l) }).ok()
}

/// An Envoy integer property: exactly 8 bytes, little-endian.
fn property_u64(path: &[&str]) -> Option<u64> {
    let v = property(path)?;
    let bytes: [u8; 8] = v.as_slice().try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn forward_property(header_name: &str, path: &[&str]) {
    let v = property(path).unwrap_or_else(|| b"<absent>".to_vec());
    add_header(REQUEST_HEADERS, header_name, &v);
}

fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

// ---- state ------------------------------------------------------------------

#[derive(Default)]
struct State {
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    requests: u32,
    ticks: u32,
    body_bytes: u32,
    callouts: HashMap<u32, u32>, // http_call token → paused stream
    paths: HashMap<u32, String>, // stream → request path, for on_log
    dns: HashMap<u32, u32>,      // envoy_resolve_dns token → paused stream
    roots: Vec<u32>,             // root contexts (parent 0)
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

// ---- callbacks --------------------------------------------------------------

#[no_mangle]
pub extern "C" fn proxy_on_context_create(ctx: u32, parent: u32) {
    if parent == 0 {
        with(|s| s.roots.push(ctx));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(root: u32, size: u32) -> u32 {
    let cfg = fetch(|p, l| unsafe { proxy_get_buffer_bytes(VM_CONFIGURATION, 0, size, p, l) }).unwrap_or_default();
    log(&format!("vm_start root={} vm_config={}", root, String::from_utf8_lossy(&cfg)));
    with(|s| s.vm_config = cfg);
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, size: u32) -> u32 {
    let cfg = fetch(|p, l| unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, p, l) }).unwrap_or_default();
    log(&format!("configure root={} config={}", root, String::from_utf8_lossy(&cfg)));
    let define = |t: u32, name: String| {
        let mut id = 0;
        unsafe { proxy_define_metric(t, name.as_ptr(), name.len(), &mut id) };
        id
    };
    let (requests, ticks, body_bytes) = (
        define(0, format!("conformance_{}_requests", LANG)),
        define(1, format!("conformance_{}_ticks", LANG)),
        define(2, format!("conformance_{}_body_bytes", LANG)),
    );
    with(|s| {
        s.plugin_config = cfg;
        s.requests = requests;
        s.ticks = ticks;
        s.body_bytes = body_bytes;
    });
    let name = "conformance-queue";
    let mut qid = 0;
    unsafe {
        proxy_register_shared_queue(name.as_ptr(), name.len(), &mut qid);
        proxy_set_tick_period_milliseconds(50);
    }
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(_root: u32) {
    let id = with(|s| s.ticks);
    unsafe { proxy_increment_metric(id, 1) };
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_root: u32, qid: u32) {
    while let Ok(msg) = fetch(|p, l| unsafe { proxy_dequeue_shared_queue(qid, p, l) }) {
        log(&format!("dequeued {}", String::from_utf8_lossy(&msg)));
    }
}

/// Shared data: increments "hits" with compare-and-swap, retrying on
/// CAS_MISMATCH, and returns the new count.
fn count_hit() -> u64 {
    let key = "hits";
    loop {
        let mut cas = 0u32;
        let cur = fetch(|p, l| unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), p, l, &mut cas) });
        let hits: u64 = cur.ok().and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
        let next = (hits + 1).to_string();
        let st = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), next.as_ptr(), next.len(), cas) };
        if st != CAS_MISMATCH {
            return hits + 1;
        }
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(ctx: u32, num_headers: u32, _eos: u32) -> u32 {
    let path = String::from_utf8(header(REQUEST_HEADERS, ":path").unwrap_or_default()).unwrap_or_default();
    log(&format!("request_headers {}", path));
    with(|s| s.paths.insert(ctx, path.clone()));

    if path.starts_with("/local") {
        let pairs = encode_pairs(&[("x-conf-local", LANG)]);
        let details = "conformance local reply";
        let body = format!("local reply from {}\n", LANG);
        unsafe {
            proxy_send_local_response(418, details.as_ptr(), details.len(), body.as_ptr(), body.len(), pairs.as_ptr(), pairs.len(), -1)
        };
        return 1;
    }
    if path.starts_with("/enqueue") {
        let (vm, name) = ("", "conformance-queue");
        let mut qid = 0;
        if unsafe { proxy_resolve_shared_queue(vm.as_ptr(), 0, name.as_ptr(), name.len(), &mut qid) } == OK {
            let msg = format!("{} {}", LANG, path);
            unsafe { proxy_enqueue_shared_queue(qid, msg.as_ptr(), msg.len()) };
        }
    }
    if path.starts_with("/callout") {
        let hdrs = encode_pairs(&[(":method", "GET"), (":path", "/callout-target"), (":authority", "conformance-upstream")]);
        let cluster = "upstream";
        let mut token = 0;
        let st = unsafe {
            proxy_http_call(cluster.as_ptr(), cluster.len(), hdrs.as_ptr(), hdrs.len(), std::ptr::null(), 0, std::ptr::null(), 0, 5000, &mut token)
        };
        if st != OK {
            add_header(REQUEST_HEADERS, "x-conf-callout-error", st.to_string().as_bytes());
            return 0;
        }
        with(|s| s.callouts.insert(token, ctx));
        return 1; // paused until the callout's answer
    }
    if let Some(action) = raw_request_headers(ctx, &path) {
        return action;
    }

    // Counted before any edit, so they describe the map the callback got:
    // the pair count must equal num_headers, and the map size (Envoy: the
    // sum of key and value bytes) the sum over the pairs.
    let pairs = fetch(|p, l| unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, p, l) }).unwrap_or_default();
    let word = |i: usize| u32::from_le_bytes([pairs[i], pairs[i + 1], pairs[i + 2], pairs[i + 3]]) as usize;
    let count = if pairs.len() >= 4 { word(0) } else { 0 };
    let pair_bytes: usize = (0..count).map(|i| word(4 + 8 * i) + word(8 + 8 * i)).sum();
    let mut map_size = 0usize;
    unsafe { proxy_get_header_map_size(REQUEST_HEADERS, &mut map_size) };

    add_header(REQUEST_HEADERS, "x-conf-lang", LANG.as_bytes());
    replace_header(REQUEST_HEADERS, "x-conf-replace", "replaced");
    remove_header(REQUEST_HEADERS, "x-conf-remove");
    let (vm_config, plugin_config) = with(|s| (s.vm_config.clone(), s.plugin_config.clone()));
    add_header(REQUEST_HEADERS, "x-conf-vm-config", &vm_config);
    add_header(REQUEST_HEADERS, "x-conf-config", &plugin_config);
    add_header(REQUEST_HEADERS, "x-conf-pairs", count.to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-pairs-bytes", pair_bytes.to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-num-headers", num_headers.to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-map-size", map_size.to_string().as_bytes());

    forward_property("x-conf-prop-path", &["request", "path"]);
    forward_property("x-conf-prop-method", &["request", "method"]);
    forward_property("x-conf-prop-protocol", &["request", "protocol"]);
    forward_property("x-conf-prop-multi", &["request", "headers", "x-multi"]);
    forward_property("x-conf-plugin-name", &["plugin_name"]);
    forward_property("x-conf-plugin-root-id", &["plugin_root_id"]);
    forward_property("x-conf-plugin-vm-id", &["plugin_vm_id"]);
    let node = property(&["xds", "node"]).map(|b| b.iter().map(|x| format!("{:02x}", x)).collect::<String>()).unwrap_or_else(|| "<absent>".into());
    add_header(REQUEST_HEADERS, "x-conf-node", node.as_bytes());
    for (name, path) in [("x-conf-source-port", &["source", "port"][..]), ("x-conf-request-time", &["request", "time"][..]), ("x-conf-connection-id", &["connection_id"][..])] {
        if let Some(v) = property_u64(path) {
            add_header(REQUEST_HEADERS, name, v.to_string().as_bytes());
        }
    }

    let (key, val) = ("conformance_lang", LANG);
    unsafe { proxy_set_property(key.as_ptr(), key.len(), val.as_ptr(), val.len()) };
    forward_property("x-conf-set-property", &[key]);

    let mut level = 99u32;
    let mut now = 0u64;
    unsafe {
        proxy_get_log_level(&mut level);
        proxy_get_current_time_nanoseconds(&mut now);
    }
    add_header(REQUEST_HEADERS, "x-conf-log-level", level.to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-now", now.to_string().as_bytes());

    let id = with(|s| s.requests);
    let mut requests = 0u64;
    unsafe {
        proxy_increment_metric(id, 1);
        proxy_get_metric(id, &mut requests);
    }
    add_header(REQUEST_HEADERS, "x-conf-requests", requests.to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-hits", count_hit().to_string().as_bytes());

    // compress then uncompress through Envoy's foreign functions.
    let call = |name: &str, args: &[u8]| fetch(|p, l| unsafe { proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), p, l) });
    let text = b"conformance conformance conformance";
    let roundtrip = call("compress", text).and_then(|z| call("uncompress", &z));
    add_header(REQUEST_HEADERS, "x-conf-foreign", if roundtrip.as_deref() == Ok(&text[..]) { b"roundtrip" } else { b"failed" });
    let missing = call("no_such_function", b"").err().unwrap_or(OK);
    add_header(REQUEST_HEADERS, "x-conf-foreign-missing", missing.to_string().as_bytes());
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(_ctx: u32, size: u32, eos: u32) -> u32 {
    if eos == 0 {
        return 1; // StopIterationAndBuffer: see the whole body at once
    }
    let (mut len, mut flags) = (0usize, 0u32);
    let id = with(|s| s.body_bytes);
    unsafe {
        proxy_get_buffer_status(REQUEST_BODY, &mut len, &mut flags);
        proxy_record_metric(id, len as u64);
    }
    if size > 0 {
        let tag = format!("[{}]", LANG);
        unsafe { proxy_set_buffer_bytes(REQUEST_BODY, 0, 0, tag.as_ptr(), tag.len()) }; // prepend
    }
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_ctx: u32, _n: u32, _eos: u32) -> u32 {
    add_header(RESPONSE_HEADERS, "x-conf-resp-lang", LANG.as_bytes());
    remove_header(RESPONSE_HEADERS, "x-upstream-remove");
    replace_header(RESPONSE_HEADERS, "x-upstream-replace", &format!("replaced-by-{}", LANG));
    if let Some(code) = property_u64(&["response", "code"]) {
        add_header(RESPONSE_HEADERS, "x-conf-resp-code", code.to_string().as_bytes());
    }
    // The body changes length below, so content-length must go.
    remove_header(RESPONSE_HEADERS, "content-length");
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(ctx: u32, size: u32, eos: u32) -> u32 {
    if eos == 0 {
        return 1;
    }
    let tag = format!("[{} was here]\n", LANG);
    unsafe { proxy_set_buffer_bytes(RESPONSE_BODY, size, 0, tag.as_ptr(), tag.len()) }; // append
    // Trailers created from the body callback at end of stream.
    if with(|s| s.paths.get(&ctx).map_or(false, |p| p.starts_with("/trailers-new"))) {
        add_header(RESPONSE_TRAILERS, "x-conf-created-trailer", LANG.as_bytes());
    }
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(_root: u32, token: u32, num_headers: u32, body_size: u32, _nt: u32) {
    let ctx = match with(|s| s.callouts.remove(&token)) {
        Some(c) => c,
        None => return,
    };
    let status = if num_headers > 0 { header(CALL_RESPONSE_HEADERS, ":status").unwrap_or_default() } else { Vec::new() };
    let body = fetch(|p, l| unsafe { proxy_get_buffer_bytes(CALL_RESPONSE_BODY, 0, body_size, p, l) }).unwrap_or_default();
    // Back on the paused stream: headers, then resume it.
    unsafe { proxy_set_effective_context(ctx) };
    add_header(REQUEST_HEADERS, "x-conf-callout-status", &status);
    add_header(REQUEST_HEADERS, "x-conf-callout-body-size", body.len().to_string().as_bytes());
    add_header(REQUEST_HEADERS, "x-conf-lang", LANG.as_bytes());
    unsafe { proxy_continue_stream(0) };
}

// ---- TCP: a network filter ahead of tcp_proxy --------------------------------

const DOWNSTREAM_DATA: u32 = 2;
const UPSTREAM_DATA: u32 = 3;

#[no_mangle]
pub extern "C" fn proxy_on_new_connection(ctx: u32) -> u32 {
    log(&format!("tcp new {}", ctx));
    0
}

/// Reads what the client sent and prepends a marker to it.
#[no_mangle]
pub extern "C" fn proxy_on_downstream_data(ctx: u32, size: u32, eos: u32) -> u32 {
    if size == 0 {
        return 0;
    }
    let data = fetch(|p, l| unsafe { proxy_get_buffer_bytes(DOWNSTREAM_DATA, 0, size, p, l) }).unwrap_or_default();
    log(&format!("tcp down {} {} {}", ctx, eos, String::from_utf8_lossy(&data)));
    let tag = format!("[{}>]", LANG);
    unsafe { proxy_set_buffer_bytes(DOWNSTREAM_DATA, 0, 0, tag.as_ptr(), tag.len()) }; // prepend
    0
}

/// Appends a marker to each chunk the upstream sends back.
#[no_mangle]
pub extern "C" fn proxy_on_upstream_data(_ctx: u32, size: u32, _eos: u32) -> u32 {
    if size > 0 {
        let tag = format!("[<{}]", LANG);
        unsafe { proxy_set_buffer_bytes(UPSTREAM_DATA, size, 0, tag.as_ptr(), tag.len()) }; // append
    }
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_connection_close(ctx: u32, peer: u32) {
    log(&format!("tcp downstream close {} {}", ctx, peer));
}

#[no_mangle]
pub extern "C" fn proxy_on_upstream_connection_close(ctx: u32, peer: u32) {
    log(&format!("tcp upstream close {} {}", ctx, peer));
}

#[no_mangle]
pub extern "C" fn proxy_on_log(ctx: u32) {
    let code = property_u64(&["response", "code"]).unwrap_or(0);
    let path = with(|s| s.paths.get(&ctx).cloned()).unwrap_or_else(|| "?".into());
    log(&format!("log {} {}", path, code));
}

fn lifecycle(ctx: u32, what: &str) {
    let (root, path) = with(|s| (s.roots.contains(&ctx), s.paths.get(&ctx).cloned()));
    if root {
        log(&format!("root_{} {}", what, ctx));
    } else if let Some(p) = path.filter(|p| p.starts_with("/lifecycle")) {
        log(&format!("{} {}", what, p));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_done(ctx: u32) -> u32 {
    lifecycle(ctx, "done");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(ctx: u32) {
    lifecycle(ctx, "delete");
    with(|s| s.paths.remove(&ctx));
}

// ---- the raw-ABI areas Rust implements (conformance/README.md) ---------------

fn decode_pairs(b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let rd = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    if b.len() < 4 {
        return out;
    }
    let n = rd(0);
    let mut d = 4 + 8 * n;
    for k in 0..n {
        let (kl, vl) = (rd(4 + 8 * k), rd(8 + 8 * k));
        out.push((b[d..d + kl].to_vec(), b[d + kl + 1..d + kl + 1 + vl].to_vec()));
        d += kl + vl + 2;
    }
    out
}

fn raw_request_headers(ctx: u32, path: &str) -> Option<u32> {
    if path.starts_with("/setpairs") {
        let old = fetch(|p, l| unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, p, l) }).unwrap_or_default();
        let mut kv: Vec<(String, String)> = decode_pairs(&old)
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()))
            .filter(|(k, _)| k != "x-conf-remove")
            .collect();
        kv.push(("x-conf-set-pairs".into(), LANG.into()));
        let refs: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let enc = encode_pairs(&refs);
        let st = unsafe { proxy_set_header_map_pairs(REQUEST_HEADERS, enc.as_ptr(), enc.len()) };
        add_header(REQUEST_HEADERS, "x-conf-set-pairs-status", st.to_string().as_bytes());
        return Some(0);
    }
    if path.starts_with("/close") {
        log(&format!("close_stream {}", unsafe { proxy_close_stream(0) }));
        return Some(1);
    }
    if path.starts_with("/dns") {
        let name = "localhost";
        let mut token = 0;
        let st = unsafe { envoy_resolve_dns(name.as_ptr(), name.len(), &mut token) };
        if st != OK {
            add_header(REQUEST_HEADERS, "x-conf-dns-error", st.to_string().as_bytes());
            return Some(0);
        }
        with(|s| s.dns.insert(token, ctx));
        return Some(1);
    }
    if path.starts_with("/misc") {
        let eq = unsafe { format!("{} {}", pthread_equal(7, 7), pthread_equal(7, 8)) };
        add_header(REQUEST_HEADERS, "x-conf-pthread-equal", eq.as_bytes());
        unsafe { emscripten_notify_memory_growth(0) };
        add_header(REQUEST_HEADERS, "x-conf-done-stream", unsafe { proxy_done() }.to_string().as_bytes());
        return Some(0);
    }
    None
}

#[no_mangle]
pub extern "C" fn envoy_on_resolve_dns(_root: u32, token: u32, size: u32) {
    let ctx = match with(|s| s.dns.remove(&token)) {
        Some(c) => c,
        None => return,
    };
    // [u32 n][n × u32 ttl][n NUL-terminated addresses]
    let data = fetch(|p, l| unsafe { proxy_get_buffer_bytes(CALL_DATA, 0, size, p, l) }).unwrap_or_default();
    let mut addrs = Vec::new();
    if data.len() >= 4 {
        let n = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        let rest = data.get(4 + 4 * n..).unwrap_or_default();
        for a in rest.split(|&c| c == 0).take(n) {
            addrs.push(String::from_utf8_lossy(a).into_owned());
        }
    }
    unsafe { proxy_set_effective_context(ctx) };
    add_header(REQUEST_HEADERS, "x-conf-dns", addrs.join(",").as_bytes());
    unsafe { proxy_continue_stream(0) };
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_ctx: u32, n: u32) -> u32 {
    let v = header(REQUEST_TRAILERS, "x-conf-req-trailer").unwrap_or_default();
    let mut size = 0;
    unsafe { proxy_get_header_map_size(REQUEST_TRAILERS, &mut size) };
    let seen = format!("n={} value={} size={}", n, String::from_utf8_lossy(&v), size);
    add_header(REQUEST_TRAILERS, "x-conf-trailer-seen", seen.as_bytes());
    add_header(REQUEST_TRAILERS, "x-conf-trailer-lang", LANG.as_bytes());
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_ctx: u32, n: u32) -> u32 {
    add_header(RESPONSE_TRAILERS, "x-conf-resp-trailer-n", n.to_string().as_bytes());
    add_header(RESPONSE_TRAILERS, "x-conf-resp-trailer", LANG.as_bytes());
    replace_header(RESPONSE_TRAILERS, "x-upstream-trailer", &format!("replaced-by-{}", LANG));
    0
}

// Called by no host for HTTP/1 (Envoy: HTTP/2 METADATA frames only) and,
// for foreign functions, by no host at all: a call would show in the log.
#[no_mangle]
pub extern "C" fn proxy_on_request_metadata(ctx: u32, n: u32) -> u32 {
    log(&format!("unexpected on_request_metadata {} {}", ctx, n));
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_metadata(ctx: u32, n: u32) -> u32 {
    log(&format!("unexpected on_response_metadata {} {}", ctx, n));
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_foreign_function(root: u32, id: u32, size: u32) {
    log(&format!("unexpected on_foreign_function {} {} {}", root, id, size));
}
