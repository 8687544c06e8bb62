#!/usr/bin/env bash
# bench/soak.sh: a long run of wasmproxy with json-validation plus the chaos
# plugin panicking on every 1,000th request of an instance (FAIL_RELOAD),
# sampling every INTERVAL: rps, errors, RSS, OS threads and goroutines of the proxy,
# and the chaos plugin's runtime_errors / vm_reload_success counters. See
# docs/perf.md, "Soak".
#
# Config: bench/soak/wasmproxy-soak.yaml (listener :28302, admin :28301,
# Go upstream :28399). Load: wrk -t1 -cCONNECTIONS -dINTERVAL --latency
# -s bench/post.lua, run back to back, so each sample is one wrk run
# (connections reopen every INTERVAL).
#
# Goroutines come from the admin's server.goroutines gauge, read twice:
# right after a wrk piece (counting the connections and streams in flight
# then) and once wrk's connections have closed (http.soak.
# downstream_cx_active back to 0 and the count steady: a few seconds
# between pieces). The second read,
# less the two goroutines (read and write loops) of each upstream
# connection kept in the pool (cluster.go_upstream.upstream_cx_active,
# which follows the load's peaks), is the "goroutines idle" column: what
# only retained goroutines move, and what is checked for flatness.
# RSS (VmRSS) and OS threads come from /proc/PID/status.
#
# Environment:
#   DURATION=10m   total (10m, 180s, 3m)      INTERVAL=10   seconds per sample
#   CONNECTIONS=50 wrk -c                     OUT=bench/results/soak-<time>
#   KEEP_WORK=1    keep the scratch directory
# Writes OUT.csv, OUT.png (gnuplot, if installed) and OUT.md (summary:
# first and last minute, min/max of RSS, threads and goroutines after the first
# minute relative to their median, flat = within ±10%).
# Exit status: 0 ok; 1 setup failed; 3 the proxy died or RSS or idle
# goroutines not flat (OS threads and goroutines under load are shown, not
# checked: the runtime keeps Ms it added under load, and in-flight
# connections move the loaded count).
set -euo pipefail

DURATION=${DURATION:-10m}
INTERVAL=${INTERVAL:-10}
CONNECTIONS=${CONNECTIONS:-50}
UPSTREAM_PORT=28399
ADMIN_PORT=28301
PORT=28302

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
STAMP=$(date -u '+%Y-%m-%dT%H%M%SZ')
OUT=${OUT:-$BENCH/results/soak-$STAMP}
BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'

log() { printf '[soak] %s\n' "$*" >&2; }
die() {
	printf '\n[soak] ERROR: %s\n\n' "$*" >&2
	exit 1
}
seconds() {
	local d=$1
	case $d in *h) echo $((${d%h} * 3600)) ;; *m) echo $((${d%m} * 60)) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac
}
TOTAL=$(seconds "$DURATION")
[[ $TOTAL =~ ^[0-9]+$ && $INTERVAL =~ ^[0-9]+$ && $INTERVAL -gt 0 ]] || die "DURATION=$DURATION INTERVAL=$INTERVAL: want e.g. 10m and 10"
for tool in wrk curl go; do
	command -v "$tool" >/dev/null || die "$tool is needed (bench/run.sh installs wrk and curl when run as root)"
done
if ! command -v gnuplot >/dev/null && [[ $(id -u) -eq 0 ]]; then
	log "installing gnuplot-nox with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; } ||
		log "could not install gnuplot-nox; no plot"
fi
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UPSTREAM_PORT $ADMIN_PORT $PORT; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

WORK=$(mktemp -d /tmp/wasmproxy-soak.XXXXXX)
PIDS=()
WRK_PID=
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	[[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then log "scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$ROOT"
log "building wasmproxy, the Go upstream, json-validation and the chaos plugin in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
go build -o "$WORK/upstream" ./bench/upstream || die "go build ./bench/upstream failed"
"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2 || die "building json-validation failed"
"$WORK/wasmproxy" plugin build e2e/testdata/chaos -o "$WORK/chaos.wasm" >&2 || die "building the chaos plugin failed"

(cd "$WORK" && exec ./upstream -port "$UPSTREAM_PORT") >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
(cd "$WORK" && exec ./wasmproxy -c "$BENCH/soak/wasmproxy-soak.yaml" --cache-dir "$WORK/cache") >"$WORK/wasmproxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
for _ in $(seq 600); do
	kill -0 "$PROXY" 2>/dev/null || die "wasmproxy exited during start-up: $(tail -n 20 "$WORK/wasmproxy.log")"
	[[ $(curl -s -m 1 "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null) == LIVE* ]] && port_busy "$UPSTREAM_PORT" && break
	sleep 0.1
done
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data "$BODY" "http://127.0.0.1:$PORT/" || true)
[[ $code == 200 ]] || die "the benchmark POST answered $code, want 200: $(tail -n 20 "$WORK/wasmproxy.log")"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data '{"id": "xxx"}' "http://127.0.0.1:$PORT/" || true)
[[ $code == 403 ]] || die "a body without token answered $code, want 403: json-validation is not filtering"

stat() { curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/stats" | awk -v k="$1" -F': ' '$1 == k {print $2; f = 1} END {if (!f) print 0}'; }
proc() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PROXY/status"; }

CSV=$WORK/soak.csv
# idle_goroutines waits (up to 2 s) for the load's connections to close,
# then prints the goroutines not owned by a pooled upstream connection.
# The connection gauge reaches 0 a moment before the connections'
# goroutines have returned, and server.goroutines is refreshed once a
# second: so after the gauge, it waits for two equal reads a second apart.
idle_goroutines() {
	local prev cur
	for _ in $(seq 20); do
		[[ $(stat http.soak.downstream_cx_active) == 0 ]] && break
		sleep 0.1
	done
	sleep 1.1
	cur=$(stat server.goroutines)
	for _ in 1 2 3 4; do
		prev=$cur
		sleep 1.1
		cur=$(stat server.goroutines)
		[[ $cur == "$prev" ]] && break
	done
	echo $((cur - 2 * $(stat cluster.go_upstream.upstream_cx_active)))
}
echo "t_s,rps,requests,errors,rss_kib,threads,runtime_errors,vm_reloads,goroutines,idle_goroutines" >"$CSV"
g=$(stat server.goroutines)
echo "0,0,0,0,$(proc VmRSS),$(proc Threads),$(stat wasm.chaos.runtime_errors),$(stat wasm.chaos.vm_reload_success),$g,$(idle_goroutines)" >>"$CSV"
log "$DURATION of load in ${INTERVAL} s samples; proxy pid $PROXY; CSV $CSV"
t=0
while ((t + INTERVAL <= TOTAL)); do
	out=$WORK/wrk-$t.txt
	timeout $((INTERVAL + 30)) wrk -t1 -c"$CONNECTIONS" -d"${INTERVAL}s" --latency -s "$BENCH/post.lua" "http://127.0.0.1:$PORT/" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || die "wrk failed: $(cat "$out")"
	WRK_PID=
	t=$((t + INTERVAL))
	kill -0 "$PROXY" 2>/dev/null || { log "wasmproxy DIED at t=$t s: $(tail -n 20 "$WORK/wasmproxy.log")"; DIED=1; break; }
	rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
	reqs=$(awk '/requests in/ {print $1}' "$out")
	errs=$(awk '/Non-2xx or 3xx responses:/ {n = $NF} /Socket errors:/ {gsub(",", ""); s = $4 + $6 + $8 + $10} END {print n + s}' "$out")
	row="$t,$rps,$reqs,$errs,$(proc VmRSS),$(proc Threads),$(stat wasm.chaos.runtime_errors),$(stat wasm.chaos.vm_reload_success),$(stat server.goroutines),$(idle_goroutines)"
	echo "$row" >>"$CSV"
	log "$row"
done

mkdir -p "$(dirname "$OUT")"
cp "$CSV" "$OUT.csv"
if command -v gnuplot >/dev/null; then
	gnuplot -e "csv='$OUT.csv'; out='$OUT.png'" "$BENCH/soak/plot.gp" && log "plot: ${OUT#"$ROOT"/}.png"
fi
# Summary (bench/soak/summary.awk).
awk -F, -v interval="$INTERVAL" -v conns="$CONNECTIONS" -v died="${DIED:-0}" -f "$BENCH/soak/summary.awk" "$OUT.csv" >"$OUT.md" && rc=0 || rc=$?
cat "$OUT.md"
log "written ${OUT#"$ROOT"/}.{csv,md}"
((rc == 0)) || log "NOT FLAT within ±10% (or the proxy died): see the table (RSS and idle goroutines are checked)"
exit "$rc"
