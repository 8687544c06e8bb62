#!/usr/bin/env bash
# bench/deadline.sh: the cost of the per-call deadline (wasm/meter
# instrumentation plus the deadline set/clear around every guest call) on
# the json-validation load run of bench/run.sh, in one run. See
# docs/perf.md, "Deadline cost".
#
# Two wasmproxy processes with the json-validation plugin, in front of the
# same Go upstream, all on 127.0.0.1:
#   on    default limits (100 ms per callback, module instrumented)   :28202
#   off   WASMPROXY_CALL_DEADLINE_MS: "0" (no deadline, no meter)       :28203
# Config: bench/configs/wasmproxy-json-validation.yaml with the ports
# changed and, for "off", vm_config.environment_variables added.
#
# Load: the same wrk settings as bench/run.sh (-t1 -cCONNECTIONS -dDURATION
# --latency -s bench/post.lua, WARMUP before each measured run), ROUNDS
# rounds alternating on, off, on, off, ... so drift hits both alike.
#
# Environment: DURATION=10s CONNECTIONS=50 WARMUP=2s ROUNDS=3 KEEP_WORK=1
#   SPINNERS=N   run N CPU-spinning processes (sh busy loops) beside the
#                proxies for the whole run: a starved machine. The table then
#                also counts deadline hits (log lines) of "on".
#   DEADLINE_MS=N  the call deadline of "on" (default: the proxy's, 100 ms),
#                e.g. DEADLINE_MS=10 SPINNERS=4 for issue 10's load test.
#   ON_BINARY=PATH  run "on" with this wasmproxy binary instead of the tree's
#                build, to compare two builds' deadline against the same "off".
# Prints a Markdown table (per round and the median of each side) and the
# off/on ratio; writes it to bench/results/deadline-<time>.md (gitignored).
# Exit status: 0 ok; 1 setup failed; 3 non-2xx, socket errors or a crash.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
SPINNERS=${SPINNERS:-0}
DEADLINE_MS=${DEADLINE_MS:-}
ON_BINARY=${ON_BINARY:-}
UPSTREAM_PORT=28299
ON_PORT=28202
OFF_PORT=28203

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'

log() { printf '[deadline] %s\n' "$*" >&2; }
die() {
	printf '\n[deadline] ERROR: %s\n\n' "$*" >&2
	exit 1
}
for tool in wrk curl go; do
	command -v "$tool" >/dev/null || die "$tool is needed (bench/run.sh installs wrk and curl when run as root)"
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UPSTREAM_PORT $ON_PORT $OFF_PORT; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

WORK=$(mktemp -d /tmp/wasmproxy-deadline.XXXXXX)
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
log "building wasmproxy, the Go upstream and the json-validation plugin in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
go build -o "$WORK/upstream" ./bench/upstream || die "go build ./bench/upstream failed"
"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2 ||
	die "wasmproxy plugin build examples/json-validation failed"

base=$BENCH/configs/wasmproxy-json-validation.yaml
on_env=()
if [[ -n $DEADLINE_MS ]]; then
	on_env=(-e 's/^\( *\)runtime: "envoy.wasm.runtime.v8"$/&\n\1environment_variables: {key_values: {WASMPROXY_CALL_DEADLINE_MS: "'"$DEADLINE_MS"'"}}/')
fi
sed -e "s/port_value: 28002/port_value: $ON_PORT/" -e "s/port_value: 28099/port_value: $UPSTREAM_PORT/" "${on_env[@]}" "$base" >"$WORK/on.yaml"
[[ -z $DEADLINE_MS ]] || grep -q "WASMPROXY_CALL_DEADLINE_MS: \"$DEADLINE_MS\"" "$WORK/on.yaml" || die "could not set the deadline in $base (its vm_config changed?)"
sed -e "s/port_value: 28002/port_value: $OFF_PORT/" -e "s/port_value: 28099/port_value: $UPSTREAM_PORT/" \
	-e 's/^\( *\)runtime: "envoy.wasm.runtime.v8"$/&\n\1environment_variables: {key_values: {WASMPROXY_CALL_DEADLINE_MS: "0"}}/' \
	"$base" >"$WORK/off.yaml"
grep -q 'WASMPROXY_CALL_DEADLINE_MS: "0"' "$WORK/off.yaml" || die "could not add the deadline override to $base (its vm_config changed?)"

start() {
	local name=$1
	shift
	(cd "$WORK" && exec "$@") >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
}
wait_ready() {
	local name=$1 port=$2 pid=$3
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || die "$name exited during start-up: $(tail -n 20 "$WORK/$name.log")"
		port_busy "$port" && return 0
		sleep 0.1
	done
	die "$name did not listen on 127.0.0.1:$port within 60 s: $(tail -n 20 "$WORK/$name.log")"
}
start upstream "$WORK/upstream" -port "$UPSTREAM_PORT"
wait_ready upstream "$UPSTREAM_PORT" "$PID_upstream"
# Separate cache dirs: the compiled module is cached by code and limits, so
# "off" must really compile the uninstrumented module.
start on "${ON_BINARY:-$WORK/wasmproxy}" -c "$WORK/on.yaml" --cache-dir "$WORK/cache-on"
start off "$WORK/wasmproxy" -c "$WORK/off.yaml" --cache-dir "$WORK/cache-off"
wait_ready on "$ON_PORT" "$PID_on"
wait_ready off "$OFF_PORT" "$PID_off"

declare -A PORT=([on]=$ON_PORT [off]=$OFF_PORT)
for t in on off; do
	code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data "$BODY" "http://127.0.0.1:${PORT[$t]}/" || true)
	[[ $code == 200 ]] || die "$t answered $code to the benchmark POST, want 200"
	code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data '{"id": "xxx"}' "http://127.0.0.1:${PORT[$t]}/" || true)
	[[ $code == 403 ]] || die "$t let a body without token through ($code, want 403): the plugin is not filtering"
done
log "checks: both answer 200, and 403 without token (plugin active)"

for _ in $(seq "$SPINNERS"); do
	sh -c 'while :; do :; done' &
	PIDS+=($!)
done
((SPINNERS == 0)) || log "$SPINNERS CPU spinners started"
# deadline_hits NAME: guest calls the proxy NAME stopped at their deadline.
deadline_hits() { grep -c 'failed: deadline exceeded' "$WORK/$1.log" || true; }

seconds() {
	local d=$1
	case $d in *h) echo $((${d%h} * 3600)) ;; *m) echo $((${d%m} * 60)) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac
}
run_wrk() {
	local out=$1 bound=$2
	shift 2
	timeout "$bound" wrk "$@" >"$out" 2>&1 &
	WRK_PID=$!
	local rc=0
	wait "$WRK_PID" || rc=$?
	WRK_PID=
	return "$rc"
}
to_ms() {
	awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.2f", n }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID: utime+stime of PID (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

bound=$(($(seconds "$DURATION") + 30))
wbound=$(($(seconds "$WARMUP") + 30))
declare -A RPS P50 P99 CPU
ROWS=()
PROBLEMS=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
	for t in on off; do
		url="http://127.0.0.1:${PORT[$t]}/"
		run_wrk "$WORK/warm-$t-$r.txt" "$wbound" -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$BENCH/post.lua" "$url" || die "wrk warm-up failed"
		out=$WORK/wrk-$t-$r.txt
		pid_var=PID_$t
		c0=$(cpu_ticks "${!pid_var}")
		run_wrk "$out" "$bound" -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH/post.lua" "$url" || die "wrk failed: $(cat "$out")"
		c1=$(cpu_ticks "${!pid_var}")
		reqs=$(awk '/requests in/ {print $1}' "$out")
		cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
		rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
		p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
		p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
		non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
		sock=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
		[[ -n $rps ]] || die "could not parse wrk output: $(cat "$out")"
		RPS[$t]+="$rps "
		P50[$t]+="$p50 "
		P99[$t]+="$p99 "
		CPU[$t]+="$cpu "
		ROWS+=("| $r | $t | $rps | $p50 | $p99 | $cpu | ${non2xx:-0} | ${sock:-0} |")
		log "round $r $t: $rps rps, p50 $p50 ms, p99 $p99 ms, proxy CPU $cpu µs/req"
		[[ ${non2xx:-0} == 0 && ${sock:-0} == 0 ]] || PROBLEMS+=("round $r $t: ${non2xx:-0} non-2xx, ${sock:-0} socket errors")
		for n in on off upstream; do
			pid_var=PID_$n
			kill -0 "${!pid_var}" 2>/dev/null || die "$n died during round $r: $(tail -n 20 "$WORK/$n.log")"
		done
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck disable=SC2086
{
	mon=$(median ${RPS[on]}) moff=$(median ${RPS[off]})
	echo "# deadline on vs off, json-validation, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "\`SPINNERS=$SPINNERS DEADLINE_MS=$DEADLINE_MS ON_BINARY=$ON_BINARY bash bench/deadline.sh\`: wrk \`-t1 -c$CONNECTIONS -d$DURATION --latency\` (+ $WARMUP warm-up) per run, $ROUNDS rounds alternating on/off; tree $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) ($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) uncommitted paths); $(nproc) CPUs; load average before/after $load_before / $load_after."
	echo
	echo "| round | deadline | rps | p50 ms | p99 ms | proxy CPU µs/req | non-2xx | socket errors |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${ROWS[@]}"
	con=$(median ${CPU[on]}) coff=$(median ${CPU[off]})
	echo "| median | on | $mon | $(median ${P50[on]}) | $(median ${P99[on]}) | $con | | |"
	echo "| median | off | $moff | $(median ${P50[off]}) | $(median ${P99[off]}) | $coff | | |"
	echo
	awk -v a="$mon" -v b="$moff" 'BEGIN {printf "- on / off rps (medians): **%.3f×**, i.e. the deadline costs **%.1f%%** rps (target ≤ 5%%)\n", a / b, (1 - a / b) * 100}'
	awk -v a="$con" -v b="$coff" 'BEGIN {printf "- proxy CPU per request, on / off (medians): **%.3f×** (less sensitive to foreign load than rps)\n", a / b}'
	echo "- guest calls stopped at their deadline (\"on\", ${DEADLINE_MS:-default} ms, $SPINNERS spinners): **$(deadline_hits on)**"
	if ((${#PROBLEMS[@]})); then
		echo
		printf -- '- **PROBLEM: %s**\n' "${PROBLEMS[@]}"
	fi
} >"$WORK/result.md"
mkdir -p "$BENCH/results"
result=$BENCH/results/deadline-$(date -u '+%Y-%m-%dT%H%M%SZ').md
cp "$WORK/result.md" "$result"
cat "$result"
log "written to ${result#"$ROOT"/}"
((${#PROBLEMS[@]} == 0)) || exit 3
