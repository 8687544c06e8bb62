// Conformance plugin in AssemblyScript, written with the third-party
// @solo-io/proxy-runtime SDK (ABI 0.2.0). It uses the SDK's contexts,
// header, property, metric, local-reply and http_call helpers; where the
// pinned SDK version has no wrapper, or a broken one (noted at each use),
// it calls the SDK's own import declarations directly.
//
// The behaviour is the one every language's conformance plugin has; it is
// specified in conformance/README.md and asserted by conformance_test.go.

export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, BaseContext, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, FilterDataStatusValues, stream_context,
  HeaderPair, Headers, Counter, Gauge, Histogram, send_local_response,
  GrpcStatusValues, continue_request,
} from "@solo-io/proxy-runtime";
import {
  get_property, set_property, get_buffer_bytes, get_buffer_status,
  set_tick_period_milliseconds, get_current_time_nanoseconds,
  enqueue_shared_queue, get_header_map_size,
  BufferTypeValues, HeaderMapTypeValues, WasmResultValues,
} from "@solo-io/proxy-runtime/runtime";
import * as imports from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

const LANG = "assemblyscript";
const QUEUE = "conformance-queue";

// proxy_set_buffer_bytes: the SDK (0.1.8) declares it under the wrong
// import name, so it is declared here.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: u32, start: u32, length: u32, data: usize, size: usize): u32;

// proxy_get_log_level (ABI 0.2.1) is newer than the SDK.
// @ts-ignore: decorator
@external("env", "proxy_get_log_level")
declare function proxy_get_log_level(level: usize): u32;

// Out-parameter cells for the direct import calls below.
let u32Cell = new ArrayBuffer(4);
let u64Cell = new ArrayBuffer(8);
let ptrCell = new ArrayBuffer(4);
let lenCell = new ArrayBuffer(4);

function u32At(b: ArrayBuffer): u32 { return load<u32>(changetype<usize>(b)); }

// Takes the (ptr, len) the host wrote to ptrCell/lenCell as an ArrayBuffer.
// The host allocated it with the SDK's malloc, which returns a retained
// ArrayBuffer of exactly len bytes: take it over, then drop malloc's
// reference (what the SDK itself does).
function takeResult(): ArrayBuffer {
  if (u32At(lenCell) == 0) return new ArrayBuffer(0);
  const ptr = u32At(ptrCell);
  const out = changetype<ArrayBuffer>(ptr);
  free(ptr);
  return out;
}

function utf8(s: string): ArrayBuffer { return String.UTF8.encode(s); }

function u64le(b: ArrayBuffer): u64 { return b.byteLength == 8 ? load<u64>(changetype<usize>(b)) : 0; }

function addRequestHeader(key: string, value: string): void { stream_context.headers.request.add(key, value); }

function hex(b: ArrayBuffer): string {
  const digits = "0123456789abcdef";
  let s = "";
  const v = Uint8Array.wrap(b);
  for (let i = 0; i < v.length; i++) {
    s += digits.charAt(v[i] >> 4) + digits.charAt(v[i] & 15);
  }
  return s;
}

// Shared data: increments "hits" with compare-and-swap, retrying on
// CAS_MISMATCH. The SDK's get/set_shared_data pass wrong pointers in
// 0.1.8, so this calls the imports it declares.
function countHit(): u64 {
  const key = utf8("hits");
  while (true) {
    let hits: u64 = 0;
    let cas: u32 = 0;
    if (imports.proxy_get_shared_data(changetype<usize>(key), key.byteLength, changetype<usize>(ptrCell), changetype<usize>(lenCell), changetype<usize>(u32Cell)) == WasmResultValues.Ok) {
      cas = u32At(u32Cell);
      hits = U64.parseInt(String.UTF8.decode(takeResult()));
    }
    const next = utf8((hits + 1).toString());
    if (imports.proxy_set_shared_data(changetype<usize>(key), key.byteLength, changetype<usize>(next), next.byteLength, cas) != WasmResultValues.CasMismatch) {
      return hits + 1;
    }
  }
  return 0;
}

// A property that may be absent: the SDK's get_property aborts on
// anything but OK, so optional ones go through its import directly.
function optionalProperty(path: string): ArrayBuffer | null {
  const p = utf8(path);
  if (imports.proxy_get_property(changetype<usize>(p), p.byteLength, changetype<usize>(ptrCell), changetype<usize>(lenCell)) != WasmResultValues.Ok) {
    return null;
  }
  return takeResult();
}

// A foreign function call; returns null unless the status is OK.
function callForeign(name: string, args: ArrayBuffer): ArrayBuffer | null {
  const n = utf8(name);
  const st = imports.proxy_call_foreign_function(changetype<usize>(n), n.byteLength, changetype<usize>(args), args.byteLength, changetype<usize>(ptrCell), changetype<usize>(lenCell));
  lastForeignStatus = st;
  return st == WasmResultValues.Ok ? takeResult() : null;
}
let lastForeignStatus: u32 = 0;

class ConformanceRoot extends RootContext {
  requests: Counter | null = null;
  ticks: Gauge | null = null;
  bodyBytes: Histogram | null = null;
  vmConfig: string = "";
  pluginConfig: string = "";

  createContext(context_id: u32): Context {
    return new ConformanceStream(context_id, this);
  }

  onStart(vm_configuration_size: usize): bool {
    this.vmConfig = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.VmConfiguration, 0, vm_configuration_size as u32));
    log(LogLevelValues.info, "vm_start root=" + this.context_id.toString() + " vm_config=" + this.vmConfig);
    return true;
  }

  // Replaces the SDK's onConfigure, which in 0.1.8 passes the size as the
  // out-length pointer.
  onConfigure(configuration_size: u32): bool {
    this.pluginConfig = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    log(LogLevelValues.info, "configure root=" + this.context_id.toString() + " config=" + this.pluginConfig);
    this.requests = new Counter("conformance_" + LANG + "_requests");
    this.ticks = new Gauge("conformance_" + LANG + "_ticks");
    this.bodyBytes = new Histogram("conformance_" + LANG + "_body_bytes");
    // The SDK's register_shared_queue passes the id by value in 0.1.8.
    const q = utf8(QUEUE);
    imports.proxy_register_shared_queue(changetype<usize>(q), q.byteLength, changetype<usize>(u32Cell));
    set_tick_period_milliseconds(50);
    return true;
  }

  onTick(): void {
    (this.ticks as Gauge).increment(1);
  }

  onQueueReady(token: u32): void {
    // The SDK's dequeue_shared_queue does not compile with the
    // AssemblyScript it asks for (a result field without initializer).
    while (imports.proxy_dequeue_shared_queue(token, changetype<usize>(ptrCell), changetype<usize>(lenCell)) == WasmResultValues.Ok) {
      log(LogLevelValues.info, "dequeued " + String.UTF8.decode(takeResult()));
    }
  }
}

// The http_call reply for a paused stream: the SDK has already made the
// stream the effective context.
function onCalloutResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  const status = headers > 0 ? stream_context.headers.http_callback.get(":status") : "";
  const body = get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, body_size as u32);
  addRequestHeader("x-conf-callout-status", status);
  addRequestHeader("x-conf-callout-body-size", body.byteLength.toString());
  addRequestHeader("x-conf-lang", LANG);
  continue_request();
}

class ConformanceStream extends Context {
  path: string = "";

  constructor(context_id: u32, root: ConformanceRoot) {
    super(context_id, root);
  }

  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as ConformanceRoot;
    this.path = stream_context.headers.request.get(":path");
    log(LogLevelValues.info, "request_headers " + this.path);

    if (this.path.startsWith("/local")) {
      const extra: Headers = [];
      extra.push(new HeaderPair(utf8("x-conf-local"), utf8(LANG)));
      send_local_response(418, "conformance local reply", utf8("local reply from " + LANG + "\n"), extra, -1 as GrpcStatusValues);
      return FilterHeadersStatusValues.StopIteration;
    }
    if (this.path.startsWith("/enqueue")) {
      // The SDK's resolve_shared_queue passes the id by value in 0.1.8.
      const vm = utf8("");
      const q = utf8(QUEUE);
      if (imports.proxy_resolve_shared_queue(changetype<usize>(vm), 0, changetype<usize>(q), q.byteLength, changetype<usize>(u32Cell)) == WasmResultValues.Ok) {
        enqueue_shared_queue(u32At(u32Cell), utf8(LANG + " " + this.path));
      }
    }
    if (this.path.startsWith("/callout")) {
      const hdrs: Headers = [];
      hdrs.push(new HeaderPair(utf8(":method"), utf8("GET")));
      hdrs.push(new HeaderPair(utf8(":path"), utf8("/callout-target")));
      hdrs.push(new HeaderPair(utf8(":authority"), utf8("conformance-upstream")));
      const st = root.httpCall("upstream", hdrs, new ArrayBuffer(0), [], 5000, this, onCalloutResponse);
      if (st != WasmResultValues.Ok) {
        addRequestHeader("x-conf-callout-error", st.toString());
        return FilterHeadersStatusValues.Continue;
      }
      return FilterHeadersStatusValues.StopIteration; // paused until the answer
    }

    // Counted before any edit, so they describe the map the callback got:
    // the pair count must equal num_headers, and the map size (Envoy: the
    // sum of key and value bytes) the sum over the pairs.
    const pairs = stream_context.headers.request.get_headers();
    let pairBytes = 0;
    for (let i = 0; i < pairs.length; i++) pairBytes += pairs[i].key.byteLength + pairs[i].value.byteLength;
    const mapSize = get_header_map_size(HeaderMapTypeValues.RequestHeaders);

    addRequestHeader("x-conf-lang", LANG);
    stream_context.headers.request.replace("x-conf-replace", "replaced");
    stream_context.headers.request.remove("x-conf-remove");
    addRequestHeader("x-conf-vm-config", root.vmConfig);
    addRequestHeader("x-conf-config", root.pluginConfig);
    addRequestHeader("x-conf-pairs", pairs.length.toString());
    addRequestHeader("x-conf-pairs-bytes", pairBytes.toString());
    addRequestHeader("x-conf-num-headers", num_headers.toString());
    addRequestHeader("x-conf-map-size", mapSize.toString());

    // Properties: the SDK's get_property aborts on anything but OK, so
    // only ones that exist on every request are read through it.
    addRequestHeader("x-conf-prop-path", String.UTF8.decode(get_property("request\0path")));
    addRequestHeader("x-conf-prop-method", String.UTF8.decode(get_property("request\0method")));
    addRequestHeader("x-conf-prop-protocol", String.UTF8.decode(get_property("request\0protocol")));
    const multi = optionalProperty("request\0headers\0x-multi");
    addRequestHeader("x-conf-prop-multi", multi !== null ? String.UTF8.decode(multi) : "<absent>");
    addRequestHeader("x-conf-plugin-name", String.UTF8.decode(get_property("plugin_name")));
    addRequestHeader("x-conf-plugin-root-id", String.UTF8.decode(get_property("plugin_root_id")));
    addRequestHeader("x-conf-plugin-vm-id", String.UTF8.decode(get_property("plugin_vm_id")));
    addRequestHeader("x-conf-node", hex(get_property("xds\0node")));
    addRequestHeader("x-conf-source-port", u64le(get_property("source\0port")).toString());
    addRequestHeader("x-conf-request-time", u64le(get_property("request\0time")).toString());
    addRequestHeader("x-conf-connection-id", u64le(get_property("connection_id")).toString());

    set_property("conformance_lang", utf8(LANG));
    addRequestHeader("x-conf-set-property", String.UTF8.decode(get_property("conformance_lang")));

    proxy_get_log_level(changetype<usize>(u32Cell));
    addRequestHeader("x-conf-log-level", u32At(u32Cell).toString());
    addRequestHeader("x-conf-now", get_current_time_nanoseconds().toString());

    const requests = root.requests as Counter;
    requests.increment(1);
    // The SDK's get_metric calls proxy_record_metric in 0.1.8.
    imports.proxy_get_metric(requests.metric_id, changetype<usize>(u64Cell));
    addRequestHeader("x-conf-requests", load<u64>(changetype<usize>(u64Cell)).toString());
    addRequestHeader("x-conf-hits", countHit().toString());

    // compress then uncompress through Envoy's foreign functions.
    const text = "conformance conformance conformance";
    let roundtrip = false;
    const z = callForeign("compress", utf8(text));
    if (z !== null) {
      const back = callForeign("uncompress", z);
      roundtrip = back !== null && String.UTF8.decode(back) == text;
    }
    addRequestHeader("x-conf-foreign", roundtrip ? "roundtrip" : "failed");
    callForeign("no_such_function", new ArrayBuffer(0));
    addRequestHeader("x-conf-foreign-missing", lastForeignStatus.toString());
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const status = get_buffer_status(BufferTypeValues.HttpRequestBody);
    ((this.root_context as ConformanceRoot).bodyBytes as Histogram).record((this.root_context as ConformanceRoot).bodyBytes!.metric_id, status.length);
    if (body_buffer_length > 0) {
      const tag = utf8("[" + LANG + "]");
      proxy_set_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, 0, changetype<usize>(tag), tag.byteLength); // prepend
    }
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-conf-resp-lang", LANG);
    stream_context.headers.response.remove("x-upstream-remove");
    stream_context.headers.response.replace("x-upstream-replace", "replaced-by-" + LANG);
    const code = optionalProperty("response\0code");
    if (code !== null) stream_context.headers.response.add("x-conf-resp-code", u64le(code).toString());
    // The body changes length below, so content-length must go.
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const tag = utf8("[" + LANG + " was here]\n");
    proxy_set_buffer_bytes(BufferTypeValues.HttpResponseBody, body_buffer_length as u32, 0, changetype<usize>(tag), tag.byteLength); // append
    return FilterDataStatusValues.Continue;
  }

  onLog(): void {
    const code = optionalProperty("response\0code");
    log(LogLevelValues.info, "log " + this.path + " " + (code !== null ? u64le(code).toString() : "0"));
  }
}

registerRootContext((context_id: u32): RootContext => new ConformanceRoot(context_id), "conformance");
