#!/usr/bin/env bash
# bench/reload.sh: hot reload under load, and cold vs warm-cache start.
# See docs/perf.md, section "Hot reload".
#
# 1. wasmproxy runs the seed config (json-validation in front of the
#    staticreply listener) with --reload-poll-interval POLL. wrk sends
#    CONNECTIONS keep-alive connections of valid JSON POSTs (bench/post.lua)
#    while the script swaps main.wasm RELOADS times, alternating two
#    plugin versions (json-validation, add-header), each by an atomic
#    rename. After each swap it probes (its own connection) until the new
#    version answers: json-validation answers 403 to a POST without
#    content-type, add-header 200 with resp-header-demo. Reported: wrk's
#    non-2xx responses and socket errors (target 0), reload successes and
#    failures (admin stats), live VM instances after the run (leak check),
#    and the time from the rename to the new version answering.
# 2. Start time of the json-validation plugin: from exec to the first
#    answer through the plugin, with an empty --cache-dir (cold: compile)
#    and again with the same directory (warm: wazero's compilation cache).
#
# Environment: RELOADS=100 CONNECTIONS=50 POLL=100ms STARTS=3 KEEP_WORK=1
# Exit status: 0 ok; 1 setup failed; 3 errors under load or a failed reload.
set -euo pipefail

RELOADS=${RELOADS:-100}
CONNECTIONS=${CONNECTIONS:-50}
POLL=${POLL:-100ms}
STARTS=${STARTS:-3}
LISTEN_PORT=28010
UPSTREAM_PORT=28011
ADMIN_PORT=28012

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[reload] %s\n' "$*" >&2; }
die() {
	printf '[reload] ERROR: %s\n' "$*" >&2
	exit 1
}
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is not installed"

WORK=$(mktemp -d /tmp/wasmproxy-reload.XXXXXX)
PROXY=""
WRK=""
cleanup() {
	for p in $PROXY $WRK; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ ${KEEP_WORK:-} == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log "building wasmproxy and the two plugin versions"
(cd "$ROOT" && go build -o "$WORK/wasmproxy" ./cmd/wasmproxy)
"$WORK/wasmproxy" plugin build "$ROOT/examples/json-validation" -o "$WORK/v1.wasm" >/dev/null
"$WORK/wasmproxy" plugin build "$ROOT/examples/add-header" -o "$WORK/v2.wasm" >/dev/null

sed -e "s/port_value: 18000/port_value: $LISTEN_PORT/" -e "s/port_value: 8099/port_value: $UPSTREAM_PORT/" \
	-e "s/port_value: 8001/port_value: $ADMIN_PORT/" -e "s/address: 0.0.0.0/address: 127.0.0.1/" \
	"$ROOT/examples/json-validation/envoy.yaml" >"$WORK/envoy.yaml"
cp "$WORK/v1.wasm" "$WORK/main.wasm"
URL=http://127.0.0.1:$LISTEN_PORT/
ADMIN=http://127.0.0.1:$ADMIN_PORT

now_ms() { date +%s%3N; }

# wait_answer CODE: until a POST without content-type answers CODE.
probe() { curl -s -o /dev/null -w '%{http_code}' -X POST "$URL" || true; }

# start_proxy CACHE_DIR: starts wasmproxy; ELAPSED is the ms from exec
# to the first answer through the plugin.
start_proxy() {
	local cache=$1 t0 t1
	t0=$(now_ms)
	(cd "$WORK" && exec ./wasmproxy -c envoy.yaml --cache-dir "$cache" --reload-poll-interval "$POLL" -l warning) >>"$WORK/proxy.log" 2>&1 &
	PROXY=$!
	for _ in $(seq 1 3000); do
		[[ $(probe) == 403 ]] && break
		sleep 0.005
	done
	t1=$(now_ms)
	[[ $(probe) == 403 ]] || die "wasmproxy did not come up (see $WORK/proxy.log)"
	ELAPSED=$((t1 - t0))
}
stop_proxy() {
	kill -TERM "$PROXY"
	wait "$PROXY" 2>/dev/null || true
	PROXY=""
}

log "start times: $STARTS cold and $STARTS warm"
COLD=()
WARM=()
for i in $(seq 1 "$STARTS"); do
	rm -rf "$WORK/cache"
	start_proxy "$WORK/cache"
	COLD+=("$ELAPSED")
	stop_proxy
	start_proxy "$WORK/cache"
	WARM+=("$ELAPSED")
	stop_proxy
done

log "reloads: $RELOADS swaps under $CONNECTIONS connections"
start_proxy "$WORK/cache"
wrk -t1 -c"$CONNECTIONS" -d600s -s "$ROOT/bench/post.lua" "$URL" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
sleep 2
LAT=()
for i in $(seq 1 "$RELOADS"); do
	if ((i % 2)); then src=v2.wasm want=200; else src=v1.wasm want=403; fi
	cp "$WORK/$src" "$WORK/main.wasm.tmp"
	t0=$(now_ms)
	mv "$WORK/main.wasm.tmp" "$WORK/main.wasm"
	for _ in $(seq 1 4000); do
		[[ $(probe) == "$want" ]] && break
		sleep 0.002
	done
	t1=$(now_ms)
	[[ $(probe) == "$want" ]] || die "reload $i: version $src never answered (see $WORK/proxy.log)"
	LAT+=($((t1 - t0)))
	sleep 0.2
done
sleep 1
kill -INT "$WRK"
wait "$WRK" 2>/dev/null || true
WRK=""
STATS=$(curl -s "$ADMIN/stats")
stop_proxy

stat() { grep -E "^$1: " <<<"$STATS" | awk '{print $2}' || true; }
summary() { # values... -> "median p95 max"
	printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%d %d %d", a[int((NR+1)/2)], a[int(NR*0.95+0.999)], a[NR]}'
}
read -r L50 L95 LMAX <<<"$(summary "${LAT[@]}")"
read -r C50 _ CMAX <<<"$(summary "${COLD[@]}")"
read -r W50 _ WMAX <<<"$(summary "${WARM[@]}")"
REQS=$(grep -E 'requests in' "$WORK/wrk.txt" | awk '{print $1}' || true)
NON2XX=$(grep -E 'Non-2xx' "$WORK/wrk.txt" | awk '{print $NF}' || true)
SOCKERR=$(grep -E 'Socket errors' "$WORK/wrk.txt" | sed 's/^ *//' || true)
RPS=$(grep -E 'Requests/sec' "$WORK/wrk.txt" | awk '{print $2}' || true)
OK=$(stat server.reload.success)
FAIL=$(stat server.reload.failure)
ACTIVE=$(stat wasm.envoy.wasm.runtime.v8.active)

cat <<EOF
## Reload run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(go version | awk '{print $3}')

| what | value |
|---|---|
| reloads (alternating json-validation / add-header) | $RELOADS, poll interval $POLL |
| load | wrk, $CONNECTIONS connections, $REQS requests, $RPS req/s |
| non-2xx responses under load | ${NON2XX:-0} |
| socket errors under load | ${SOCKERR:-none} |
| reloads succeeded / failed (admin stats) | ${OK:-?} / ${FAIL:-0} |
| VM instances alive after the run | ${ACTIVE:-?} (one plugin's pool) |
| file change → new version answering, median / p95 / max | $L50 / $L95 / $LMAX ms |
| json-validation start, cold cache (median / max of $STARTS) | $C50 / $CMAX ms |
| json-validation start, warm cache (median / max of $STARTS) | $W50 / $WMAX ms |
EOF
if [[ -n ${NON2XX:-} || -n ${SOCKERR:-} || ${FAIL:-0} != 0 ]]; then
	exit 3
fi
