#!/usr/bin/env bash
# bench/jsoncmp.sh: the same JSON-validation logic as a Wasm plugin and as
# a native Go filter, in one proxy in front of one upstream (bench/jsoncmp),
# measured with wrk in alternating rounds. DESIGN.md's target: the Wasm
# filter at ≥ 0.9× of the native one. See docs/perf.md.
#
# Environment: DURATION=10s per round, ROUNDS=3, CONNECTIONS=50.
# Ports: upstream 28099, native 28011, Wasm 28012.
# Writes bench/results/jsoncmp-<time>.md and prints it.
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results/jsoncmp-$(date -u '+%Y-%m-%dT%H%M%SZ').md
BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'

log() { printf '[jsoncmp] %s\n' "$*" >&2; }
die() {
	printf '[jsoncmp] ERROR: %s\n' "$*" >&2
	exit 1
}
for tool in wrk curl go; do
	command -v "$tool" >/dev/null || die "$tool is needed (bench/run.sh installs wrk and curl when run as root)"
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 28099 28011 28012; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

WORK=$(mktemp -d /tmp/wasmproxy-jsoncmp.XXXXXX)
PIDS=()
cleanup() {
	local rc=$? pid
	trap - EXIT
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

cd "$ROOT"
log "building the upstream, the plugin and bench/jsoncmp in $WORK"
go build -o "$WORK/upstream" ./bench/upstream
go run ./cmd/wasmproxy plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2
go -C bench/jsoncmp build -o "$WORK/jsoncmp" .

"$WORK/upstream" -port 28099 >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
"$WORK/jsoncmp" -wasm "$WORK/json-validation.wasm" -cache-dir "$WORK/cache" >"$WORK/jsoncmp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
	port_busy 28011 && port_busy 28012 && port_busy 28099 && break
	sleep 0.1
done
for port in 28011 28012; do
	code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data "$BODY" "http://127.0.0.1:$port/")
	[[ $code == 200 ]] || die "port $port answered $code to a valid body, want 200: $(cat "$WORK/jsoncmp.log")"
	code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data '{"id": 1}' "http://127.0.0.1:$port/")
	[[ $code == 403 ]] || die "port $port answered $code to a body without token, want 403"
done

rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
declare -A runs
for round in $(seq "$ROUNDS"); do
	for kind in native wasm; do
		port=28011
		[[ $kind == wasm ]] && port=28012
		wrk -t1 -c2 -d2s -s bench/post.lua "http://127.0.0.1:$port/" >/dev/null # warm-up
		wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "http://127.0.0.1:$port/" >"$WORK/$kind-$round.txt"
		runs[$kind]+="$(rps "$WORK/$kind-$round.txt") "
		log "round $round $kind: $(rps "$WORK/$kind-$round.txt") rps"
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
n=$(echo "${runs[native]}" | median)
w=$(echo "${runs[wasm]}" | median)
mkdir -p "$(dirname "$OUT")"
{
	echo "# json-validation, native Go filter vs Wasm plugin, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "\`bash bench/jsoncmp.sh\`: wrk -t1 -c$CONNECTIONS -d$DURATION per round, $ROUNDS alternating rounds, POST of the seed's valid body; $(nproc) CPUs; tree $(git rev-parse --short HEAD)."
	echo
	echo "| filter | rps per round | median |"
	echo "|---|---|---:|"
	echo "| native Go (gjson) | ${runs[native]}| $n |"
	echo "| Wasm (examples/json-validation) | ${runs[wasm]}| $w |"
	echo
	awk -v n="$n" -v w="$w" 'BEGIN {printf "Wasm / native: **%.2f×** (target ≥ 0.90×)\n", w / n}'
} >"$OUT"
cat "$OUT"
