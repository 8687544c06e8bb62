#!/usr/bin/env bash
# bench/plugin-floor.sh: where the seed plugin's cost lies, end to end. Four
# wasmproxies in front of the same Go upstream, loaded in alternating
# rounds (wrk -t1 -cCONNECTIONS POST of bench/post.lua, as bench/run.sh):
#
#   none      no plugin                                        :28001
#   c-noop    bench/jsoncmp/cnoop: the seed plugin's callbacks  :28031
#             and host reads in C with no runtime (clang)
#   go-noop   bench/jsoncmp/noop: the same in Go with our SDK   :28032
#             (the standard Go toolchain), no JSON work
#   json      examples/json-validation, the seed plugin         :28002
#
# Each step adds one layer: c-noop − none is the host's side of a plugin
# (crossings, host functions, instance locks, buffering), go-noop − c-noop
# the Go runtime and SDK in the guest, json − go-noop the plugin's own
# work (gjson). Prints per round rps and proxy CPU per request
# (/proc/PID/stat), then each target's rps against none's, summed over
# the rounds, and the layers in µs per request. Issue 12's plugin target
# is json ≥ 0.90× of none.
#
# Environment: ROUNDS=5, DURATION=4s, CONNECTIONS=50. Needs wrk, curl,
# clang and wasm-ld (installed with apt-get when missing, as root).
# Loopback only; every process it starts is stopped at the end.
set -euo pipefail
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4s}
CONNECTIONS=${CONNECTIONS:-50}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive number"
[[ $(seconds "$DURATION") =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want e.g. 4s"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || die "CONNECTIONS=$CONNECTIONS: want a number"
need_tools wrk:wrk curl:curl clang:clang wasm-ld:lld
command -v go >/dev/null || die "the Go toolchain is not on PATH"

TARGETS=(none c-noop go-noop json)
declare -A PORT=([none]=$NOPLUGIN_PORT [c-noop]=28031 [go-noop]=28032 [json]=$PLUGIN_PORT)
check_ports "$UPSTREAM_PORT" "${PORT[@]}"
setup_work
# wasmproxy, the upstream and json-validation.wasm, as bench/run.sh builds them.
build_all
mv "$WORK/json-validation.wasm" "$WORK/json.wasm"
log "building the two noop plugins in $WORK"
"$WORK/wasmproxy" plugin build bench/jsoncmp/noop -o "$WORK/go-noop.wasm" >&2 ||
	die "wasmproxy plugin build bench/jsoncmp/noop failed"
# As bench/jsoncmp/cnoop/noop.c says.
clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--allow-undefined \
	-o "$WORK/c-noop.wasm" bench/jsoncmp/cnoop/noop.c || die "clang could not build bench/jsoncmp/cnoop/noop.c"

# Every plugin runs in the seed plugin's filter chain (its configuration
# is ignored by the two noops), with its own port, stat prefix and file.
cp "$BENCH/configs/wasmproxy-noplugin.yaml" "$WORK/none.yaml"
for t in c-noop go-noop json; do
	sed "s/port_value: $PLUGIN_PORT/port_value: ${PORT[$t]}/; s/bench_json_validation/bench_${t//-/_}/; s#\./json-validation\.wasm#$WORK/$t.wasm#" \
		"$BENCH/configs/wasmproxy-json-validation.yaml" >"$WORK/$t.yaml"
	grep -q "$WORK/$t.wasm" "$WORK/$t.yaml" || die "could not point $WORK/$t.yaml at $t.wasm"
done
start upstream "$WORK/upstream" -port "$UPSTREAM_PORT"
wait_ready upstream "$UPSTREAM_PORT" "$PID_upstream"
declare -A PROXYPID
for t in "${TARGETS[@]}"; do
	start "$t" "$WORK/wasmproxy" -c "$WORK/$t.yaml" --cache-dir "$WORK/cache-$t"
	PROXYPID[$t]=$!
done
for t in "${TARGETS[@]}"; do
	wait_ready "$t" "${PORT[$t]}" "${PROXYPID[$t]}"
	check "$t" "${PORT[$t]}"
done
# The seed plugin is in the path: a body without "token" is refused.
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
	--data '{"id": "xxx"}' "http://127.0.0.1:${PORT[json]}/" || true)
[[ $code == 403 ]] || die "the json target let a body without 'token' through (HTTP $code, want 403)"

idle_check
bound=$(($(seconds "$DURATION") + 30))
for t in "${TARGETS[@]}"; do
	run_bounded "$WORK/warm-$t.txt" 40 wrk -t1 -c"$CONNECTIONS" -d2s -s "$BENCH/post.lua" "http://127.0.0.1:${PORT[$t]}/" ||
		die "wrk warm-up against $t failed: $(cat "$WORK/warm-$t.txt")"
done
declare -A RPS_SUM CPU_SUM
echo "plugin-floor: $ROUNDS rounds of wrk -t1 -c$CONNECTIONS -d$DURATION -s bench/post.lua per target, $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), load before $LOAD_BEFORE"
printf '%-6s %-8s %9s %8s %12s\n' round target rps p99 cpu_us/req
for r in $(seq "$ROUNDS"); do
	for t in "${TARGETS[@]}"; do
		c0=$(cpu_ticks "${PROXYPID[$t]}")
		run_bounded "$WORK/wrk.txt" "$bound" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH/post.lua" "http://127.0.0.1:${PORT[$t]}/" ||
			die "wrk against $t failed: $(cat "$WORK/wrk.txt")"
		c1=$(cpu_ticks "${PROXYPID[$t]}")
		grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.txt" && die "$t had errors: $(grep 'Non-2xx\|Socket errors' "$WORK/wrk.txt")"
		rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/wrk.txt")
		n=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
		[[ -n $rps && -n $n && $n -gt 0 ]] || die "could not parse wrk's output for $t: $(cat "$WORK/wrk.txt")"
		cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
		printf '%-6s %-8s %9s %8s %12s\n' "$r" "$t" "$rps" "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")" "$cpu"
		RPS_SUM[$t]=$((${RPS_SUM[$t]:-0} + rps))
		CPU_SUM[$t]=$(awk -v a="${CPU_SUM[$t]:-0}" -v b="$cpu" 'BEGIN {print a + b}')
	done
done
echo
printf '%-8s %14s %18s\n' target 'rps vs none' 'cpu_us/req (mean)'
for t in "${TARGETS[@]}"; do
	printf '%-8s %14s %18s\n' "$t" "$(ratio "${RPS_SUM[$t]}" "${RPS_SUM[none]}")" \
		"$(awk -v s="${CPU_SUM[$t]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}')"
done
awk -v n="$ROUNDS" -v a="${CPU_SUM[none]}" -v b="${CPU_SUM[c-noop]}" -v c="${CPU_SUM[go-noop]}" -v d="${CPU_SUM[json]}" 'BEGIN {
	printf "\nlayers, proxy CPU µs per request: host side %+.1f (c-noop − none), Go runtime + SDK %+.1f (go-noop − c-noop), the plugin'"'"'s own work %+.1f (json − go-noop)\n", (b - a) / n, (c - b) / n, (d - c) / n }'
echo "issue 12's plugin target (json ≥ 0.90× of none): $(verdict "${RPS_SUM[json]} >= 0.9 * ${RPS_SUM[none]}")"
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
