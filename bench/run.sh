#!/usr/bin/env bash
# bench/run.sh: HTTP throughput of wasmproxy next to nginx and HAProxy, on
# this machine, in one run. See docs/perf.md. (bench/h2load.sh: the same
# targets over h2c.)
#
# Targets (all on 127.0.0.1, all in front of the same Go upstream):
#   upstream       the Go upstream itself, no proxy             :28099
#   wasmproxy      wasmproxy, no Wasm filter                    :28001
#   wasmproxy+wasm wasmproxy + json-validation plugin           :28002
#   nginx          nginx reverse proxy, upstream keepalive      :28003
#   haproxy        HAProxy reverse proxy, http-reuse always     :28004
#
# Load: wrk, HTTP/1.1 keep-alive, 1 thread, CONNECTIONS connections, DURATION
# per target (after a WARMUP run), POST of a valid 52-byte JSON body
# (bench/post.lua), --latency.
#
# Per wasmproxy target also the Go heap allocations per request: the
# runtime's counters (bench/allocmetrics, linked in for the bench only)
# read before and after the measured run, divided by wrk's requests.
#
# Environment:
#   DURATION=10s     measured run per target (wrk -d syntax: 10, 10s, 1m)
#   CONNECTIONS=50   wrk -c
#   WARMUP=2s        warm-up run per target (not reported)
#   KEEP_WORK=1      keep the scratch directory (logs, raw wrk output)
#
# Installs wrk, nginx, haproxy, curl with apt-get only when missing (as root).
# Writes bench/results/<date>.md (gitignored) and prints the same to stdout.
# Exit status: 0 ok; 1 setup or check failed; 3 the run finished but some
# target had non-2xx responses, socket errors or a process died.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2s}
THREADS=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

[[ $(seconds "$DURATION") =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want e.g. 10s, 30, 1m"
[[ $(seconds "$WARMUP") =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP: want e.g. 2s"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || die "CONNECTIONS=$CONNECTIONS: want a number"

need_tools wrk:wrk nginx:nginx haproxy:haproxy curl:curl
command -v go >/dev/null || die "the Go toolchain is not on PATH"
check_ports "${ALL_PORTS[@]}"
setup_work
build_all
start_servers

check upstream "$UPSTREAM_PORT"
check wasmproxy_noplugin "$NOPLUGIN_PORT"
check wasmproxy_plugin "$PLUGIN_PORT"
check nginx "$NGINX_PORT"
check haproxy "$HAPROXY_PORT"
check_plugin_active

# ---------------------------------------------------------------- load
TARGETS=(upstream wasmproxy_noplugin wasmproxy_plugin nginx haproxy)
declare -A PORT=([upstream]=$UPSTREAM_PORT [wasmproxy_noplugin]=$NOPLUGIN_PORT [wasmproxy_plugin]=$PLUGIN_PORT
	[nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
declare -A LABEL=([upstream]="Go upstream, direct" [wasmproxy_noplugin]="wasmproxy, no plugin"
	[wasmproxy_plugin]="wasmproxy + json-validation" [nginx]="nginx" [haproxy]="HAProxy")
declare -A PROXYPID=([upstream]="" [wasmproxy_noplugin]=$PID_wasmproxy_noplugin [wasmproxy_plugin]=$PID_wasmproxy_plugin
	[nginx]=$PID_nginx [haproxy]=$PID_haproxy)
declare -A METRICS=([wasmproxy_noplugin]=$NOPLUGIN_METRICS_PORT [wasmproxy_plugin]=$PLUGIN_METRICS_PORT)
declare -A RPS P50 P99 REQS NON2XX SOCKERR PCPU UCPU WCPU OCPU ALLOCS ABYTES
PROBLEMS=()

bound=$(($(seconds "$DURATION") + 30))
wbound=$(($(seconds "$WARMUP") + 30))
idle_check
date_start=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
for t in "${TARGETS[@]}"; do
	url="http://127.0.0.1:${PORT[$t]}/"
	log "$t: warm-up $WARMUP"
	run_bounded "$WORK/wrk-$t-warmup.txt" "$wbound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$BENCH/post.lua" "$url" ||
		die "wrk warm-up against $t failed: $(cat "$WORK/wrk-$t-warmup.txt")"
	log "$t: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/post.lua $url"
	a0=
	if [[ -n ${METRICS[$t]:-} ]]; then a0=$(allocs "${METRICS[$t]}"); fi
	p0=0
	[[ -n ${PROXYPID[$t]} ]] && p0=$(cpu_ticks "${PROXYPID[$t]}")
	u0=$(cpu_ticks "$PID_upstream")
	s0=$(busy_ticks)
	times >"$WORK/times0-$t.txt"
	run_bounded "$WORK/wrk-$t.txt" "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH/post.lua" "$url" ||
		die "wrk against $t failed: $(cat "$WORK/wrk-$t.txt")"
	times >"$WORK/times1-$t.txt"
	s1=$(busy_ticks)
	p1=0
	[[ -n ${PROXYPID[$t]} ]] && p1=$(cpu_ticks "${PROXYPID[$t]}")
	u1=$(cpu_ticks "$PID_upstream")
	a1=
	if [[ -n ${METRICS[$t]:-} ]]; then a1=$(allocs "${METRICS[$t]}"); fi
	out=$WORK/wrk-$t.txt
	RPS[$t]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
	REQS[$t]=$(awk '/requests in/ {print $1}' "$out")
	P50[$t]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	P99[$t]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	NON2XX[$t]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	NON2XX[$t]=${NON2XX[$t]:-0}
	SOCKERR[$t]=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
	SOCKERR[$t]=${SOCKERR[$t]:-0}
	[[ -n ${RPS[$t]} && -n ${REQS[$t]} && ${REQS[$t]} -gt 0 ]] || die "could not parse wrk output for $t: $(cat "$out")"
	if [[ -n ${PROXYPID[$t]} ]]; then
		PCPU[$t]=$(awk -v d=$((p1 - p0)) -v hz="$CLK_TCK" -v n="${REQS[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	else
		PCPU[$t]="—"
	fi
	if [[ -n $a0 ]]; then
		ALLOCS[$t]=$(per_req $((${a1% *} - ${a0% *})) "${REQS[$t]}")
		ABYTES[$t]=$(per_req $((${a1#* } - ${a0#* })) "${REQS[$t]}")
	else
		ALLOCS[$t]="—"
		ABYTES[$t]="—"
	fi
	WCPU[$t]=$(awk -v a="$(children_cpu "$WORK/times0-$t.txt")" -v b="$(children_cpu "$WORK/times1-$t.txt")" 'BEGIN {printf "%.1f", b - a}')
	OCPU[$t]=$(awk -v all=$((s1 - s0)) -v p=$((p1 - p0)) -v u=$((u1 - u0)) -v w="${WCPU[$t]}" -v hz="$CLK_TCK" \
		'BEGIN {printf "%.1f", (all - p - u) / hz - w}')
	UCPU[$t]=$(awk -v d=$((u1 - u0)) -v hz="$CLK_TCK" -v n="${REQS[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	log "$t: ${RPS[$t]} rps, p50 ${P50[$t]} ms, p99 ${P99[$t]} ms, allocs/req ${ALLOCS[$t]}, non-2xx ${NON2XX[$t]}, socket errors ${SOCKERR[$t]}"
	if [[ ${NON2XX[$t]} != 0 || ${SOCKERR[$t]} != 0 ]]; then
		PROBLEMS+=("$t: ${NON2XX[$t]} non-2xx responses, ${SOCKERR[$t]} socket errors (wrk output below)")
	fi
	for n in "${TARGETS[@]}"; do
		[[ $n == upstream ]] && pid=$PID_upstream || pid=${PROXYPID[$n]}
		if ! kill -0 "$pid" 2>/dev/null; then
			PROBLEMS+=("$n (pid $pid) died during the run against $t; log: $(tail -n 20 "$WORK/$n.log")")
			die "$n died during the run against $t: $(tail -n 20 "$WORK/$n.log")"
		fi
	done
done

# ---------------------------------------------------------------- report
stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
mkdir -p "$BENCH/results"
result=$BENCH/results/$stamp.md
np=wasmproxy_noplugin
{
	echo "# wasmproxy benchmark, $date_start"
	echo
	echo "\`bash bench/run.sh\`: wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), \`-t$THREADS -c$CONNECTIONS -d$DURATION --latency\`, HTTP/1.1 keep-alive, POST of a 52-byte JSON body with \`content-type: application/json\` (bench/post.lua), $WARMUP warm-up per target, everything on 127.0.0.1 in front of the same Go upstream (bench/upstream)."
	echo
	echo "| target | rps | p50 ms | p99 ms | × nginx | × HAProxy | non-2xx | socket errors | proxy CPU µs/req | allocs/req | alloc B/req | upstream CPU µs/req | wrk CPU s | other CPU s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${TARGETS[@]}"; do
		x=$(ratio "${RPS[$t]}" "${RPS[nginx]}")
		h=$(ratio "${RPS[$t]}" "${RPS[haproxy]}")
		[[ $t == upstream ]] && x="($x)" && h="($h)"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
			"$x" "$h" "${NON2XX[$t]}" "${SOCKERR[$t]}" "${PCPU[$t]}" "${ALLOCS[$t]}" "${ABYTES[$t]}" "${UCPU[$t]}" "${WCPU[$t]}" "${OCPU[$t]}"
	done
	echo
	echo "Issue 12's targets, in this run:"
	echo
	echo "| target | this run | verdict |"
	echo "|---|---|---|"
	echo "| wasmproxy no plugin ≥ 0.80× nginx rps (long run 1.00×) | $(ratio "${RPS[$np]}" "${RPS[nginx]}") (× HAProxy $(ratio "${RPS[$np]}" "${RPS[haproxy]}")) | $(verdict "${RPS[$np]} >= 0.8 * ${RPS[nginx]}") |"
	echo "| proxy CPU/req no plugin ≤ 1.5× nginx's | ${PCPU[$np]} / ${PCPU[nginx]} µs = $(ratio "${PCPU[$np]}" "${PCPU[nginx]}") (× HAProxy's $(ratio "${PCPU[$np]}" "${PCPU[haproxy]}")) | $(verdict "${PCPU[$np]} <= 1.5 * ${PCPU[nginx]}") |"
	echo "| + json-validation ≥ 0.90× of no plugin | $(ratio "${RPS[wasmproxy_plugin]}" "${RPS[$np]}") | $(verdict "${RPS[wasmproxy_plugin]} >= 0.9 * ${RPS[$np]}") |"
	echo "| p99 no plugin ≤ nginx's + 1 ms | ${P99[$np]} vs ${P99[nginx]} ms | $(verdict "${P99[$np]} <= ${P99[nginx]} + 1") |"
	echo "| p99 + json-validation ≤ nginx's + 1 ms | ${P99[wasmproxy_plugin]} vs ${P99[nginx]} ms | $(verdict "${P99[wasmproxy_plugin]} <= ${P99[nginx]} + 1") |"
	echo
	echo "- CPU µs/req: utime+stime from /proc/PID/stat over the measured run (nginx: master + workers; HAProxy: its one process, 2 threads), divided by the requests wrk completed. wrk CPU s: wrk's own user+sys CPU-seconds. other CPU s: machine busy time (/proc/stat) minus proxy, upstream and wrk, i.e. foreign load; more than about 1 CPU-s per 10 s means the run was disturbed (tick accounting is good to about ±0.5 s)."
	echo "- allocs/req, alloc B/req: the wasmproxy process's Go heap allocations (runtime/metrics /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects, and /gc/heap/allocs:bytes) over the measured run, divided by the requests wrk completed; background work (stats sampling, timers) included, a Wasm guest's allocations inside its linear memory not."
	if ((${#PROBLEMS[@]})); then
		echo
		echo "## PROBLEMS"
		echo
		for p in "${PROBLEMS[@]}"; do echo "- **$p**"; done
	fi
	echo
	echo "## Machine"
	echo
	machine_rows
	echo "| date | $date_start |"
	echo "| wrk | $(wrk -v 2>&1 | head -n 1) |"
	echo
	echo "## Raw wrk output"
	for t in "${TARGETS[@]}"; do
		echo
		echo "### ${LABEL[$t]} (127.0.0.1:${PORT[$t]})"
		echo
		echo '```'
		cat "$WORK/wrk-$t.txt"
		echo '```'
	done
} >"$result"

cat "$result"
log "written to ${result#"$ROOT"/}"
if ((${#PROBLEMS[@]})); then
	printf '\n[bench] PROBLEMS:\n' >&2
	printf '[bench]   %s\n' "${PROBLEMS[@]}" >&2
	KEEP_WORK=1
	exit 3
fi
