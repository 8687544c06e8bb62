#!/usr/bin/env bash
# bench/perroute.sh: the memory cost of per-route plugin configurations
# (issue 14). The seed's json-validation plugin runs with --concurrency 2
# behind one listener whose virtual host has N routes, each giving the
# filter its own configuration (N = 0, 1, 8, 32, 128 by default); after
# /ready and one request per route, the process's VmRSS and the
# instance count (wasm.envoy.wasm.runtime.v8.active) are printed per N.
# The per-configuration cost is (RSS(N) - RSS(0)) / N. A first start,
# not printed, fills the compilation cache so every measured start is warm. Ports 28280 (listener),
# 28299 (upstream: bench/upstream), 28201 (admin).
#
# RELOAD_BINS="old new" measures reloads instead: each binary (built
# beforehand, e.g. from two commits) serves N=${RELOAD_N:-128} route
# configurations and is reloaded ${RELOADS:-8} times, each time with one
# route's configuration changed; the binaries take turns, and the
# reload's took_ms (/reload_status) is printed per reload.
set -euo pipefail

COUNTS=${COUNTS:-"0 1 8 32 128"}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[perroute] %s\n' "$*" >&2; }
WORK=$(mktemp -d /tmp/wasmproxy-perroute.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
cd "$ROOT"
log "building wasmproxy, the json-validation plugin and bench/upstream in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy
go build -o "$WORK/upstream" ./bench/upstream
"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/main.wasm" >&2
"$WORK/upstream" -port 28299 >/dev/null 2>&1 &
PIDS+=($!)

config() { # N
	cat <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 28201}}}
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: 28280}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
YAML
	for ((i = 0; i < $1; i++)); do
		cat <<YAML
                        - match: {prefix: "/r$i/"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            jv:
                              "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                              is_optional: true
                              config:
                                "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                                config: {configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: '{"requiredKeys": ["id", "k$i"]}'}}
YAML
	done
	cat <<YAML
                        - match: {prefix: "/"}
                          route: {cluster: backend}
                http_filters:
                  - name: jv
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: '{"requiredKeys": ["id"]}'}
                        vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: $WORK/main.wasm}}}
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
    - name: backend
      load_assignment:
        cluster_name: backend
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 28299}}}}]}]
YAML
}

if [[ -n ${RELOAD_BINS:-} ]]; then
	n=${RELOAD_N:-128}
	printf '%-8s %-6s %s\n' binary reload took_ms
	for round in $(seq "${ROUNDS:-3}"); do
		for bin in $RELOAD_BINS; do
			config "$n" >"$WORK/envoy.yaml"
			"$bin" -c "$WORK/envoy.yaml" --concurrency 2 --cache-dir "$WORK/cache" --reload-poll-interval 0 >"$WORK/log" 2>&1 &
			pid=$!
			for _ in $(seq 600); do
				curl -fs http://127.0.0.1:28201/ready >/dev/null 2>&1 && break
				sleep 0.1
			done
			for i in $(seq "${RELOADS:-8}"); do
				# One route's configuration changes each time: k0 → k0-1 → k0-2 ...
				sed -i -E "s/\"k0(-[0-9]+)?\"/\"k0-$round$i\"/" "$WORK/envoy.yaml"
				took=$(curl -s -X POST http://127.0.0.1:28201/reload | grep -oE '"took_ms": *[0-9]+' | head -1 | grep -oE '[0-9]+$')
				printf '%-8s %-6s %s\n' "$(basename "$bin")" "$round.$i" "$took"
			done
			kill "$pid"
			wait "$pid" 2>/dev/null || true
		done
	done
	exit 0
fi

printf '%-6s %-10s %-10s %s\n' routes rss_kib instances per_config_kib
base=""
for n in warmup $COUNTS; do
	warm=0
	[[ $n == warmup ]] && warm=1 && n=0 # fills the compilation cache; not printed
	config "$n" >"$WORK/envoy.yaml"
	"$WORK/wasmproxy" -c "$WORK/envoy.yaml" --concurrency 2 --cache-dir "$WORK/cache" >"$WORK/log" 2>&1 &
	pid=$!
	for _ in $(seq 600); do
		curl -fs http://127.0.0.1:28201/ready >/dev/null 2>&1 && break
		sleep 0.1
	done
	for ((i = 0; i < n; i++)); do
		curl -s -o /dev/null -X POST "http://127.0.0.1:28280/r$i/" -H 'content-type: application/json' --data "{\"id\": 1, \"k$i\": 2}"
	done
	curl -s -o /dev/null -X POST http://127.0.0.1:28280/ -H 'content-type: application/json' --data '{"id": 1}'
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	inst=$(curl -s 'http://127.0.0.1:28201/stats?filter=^wasm.envoy.wasm.runtime.v8.active$' | awk '{print $2}')
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	((warm)) && continue
	[[ -z $base ]] && base=$rss
	per="-"
	((n > 0)) && per=$(((rss - base) / n))
	printf '%-6s %-10s %-10s %s\n' "$n" "$rss" "$inst" "$per"
done
