#!/usr/bin/env bash
# bench/h2load.sh: HTTP/2 over cleartext (h2c, prior knowledge) throughput
# of wasmproxy next to nginx and HAProxy, on this machine, in one run.
# bench/run.sh is the same over HTTP/1.1 with wrk; see docs/perf.md.
#
# Targets (all on 127.0.0.1, all proxying over HTTP/1.1 keep-alive to the
# same Go upstream, bench/upstream :28099):
#   wasmproxy      wasmproxy, no Wasm filter (codec_type auto)   :28001
#   wasmproxy+wasm wasmproxy + json-validation plugin            :28002
#   nginx          nginx, `listen ... http2` (h2c)               :28013
#   haproxy        HAProxy, `bind ... proto h2`                  :28014
#
# Load: h2load -t1, CONNECTIONS connections with up to STREAMS concurrent
# streams each, for DURATION per target after a WARMUP run, POST of the
# same 52-byte JSON body as bench/run.sh. Latency percentiles come from
# h2load's per-request log (--log-file). Per wasmproxy target also the Go
# heap allocations per request (bench/allocmetrics), as in bench/run.sh.
#
# Environment:
#   DURATION=10      measured run per target, seconds (h2load -D)
#   CONNECTIONS=10   h2load -c
#   STREAMS=10       h2load -m (concurrent streams per connection)
#   WARMUP=2         warm-up run per target, seconds (not reported)
#   KEEP_WORK=1      keep the scratch directory (logs, raw h2load output)
#
# Installs nghttp2-client (h2load), nginx, haproxy, curl with apt-get only
# when missing (as root). Writes bench/results/<date>-h2load.md (gitignored)
# and prints it. Exit status: 0 ok; 1 setup or check failed; 3 the run
# finished but some target had failed or non-2xx requests.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-10}
STREAMS=${STREAMS:-10}
WARMUP=${WARMUP:-2}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for v in DURATION CONNECTIONS STREAMS WARMUP; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v=${!v}: want a positive whole number"
done

need_tools h2load:nghttp2-client nginx:nginx haproxy:haproxy curl:curl
command -v go >/dev/null || die "the Go toolchain is not on PATH"
check_ports "${ALL_PORTS[@]}"
setup_work
build_all
start_servers
printf '%s' "$BODY" >"$WORK/body.json"

TARGETS=(wasmproxy_noplugin wasmproxy_plugin nginx haproxy)
declare -A PORT=([wasmproxy_noplugin]=$NOPLUGIN_PORT [wasmproxy_plugin]=$PLUGIN_PORT
	[nginx]=$NGINX_H2C_PORT [haproxy]=$HAPROXY_H2C_PORT)
declare -A LABEL=([wasmproxy_noplugin]="wasmproxy, no plugin" [wasmproxy_plugin]="wasmproxy + json-validation"
	[nginx]="nginx" [haproxy]="HAProxy")
declare -A PROXYPID=([wasmproxy_noplugin]=$PID_wasmproxy_noplugin [wasmproxy_plugin]=$PID_wasmproxy_plugin
	[nginx]=$PID_nginx [haproxy]=$PID_haproxy)
declare -A METRICS=([wasmproxy_noplugin]=$NOPLUGIN_METRICS_PORT [wasmproxy_plugin]=$PLUGIN_METRICS_PORT)

# Each target answers the benchmark's POST over h2c, and really as HTTP/2.
for t in "${TARGETS[@]}"; do
	check "${t}_h2c" "${PORT[$t]}" --http2-prior-knowledge
	v=$(curl -sS -m 10 --http2-prior-knowledge -o /dev/null -w '%{http_version}' -X POST \
		-H 'content-type: application/json' --data "$BODY" "http://127.0.0.1:${PORT[$t]}/" || true)
	[[ $v == 2 ]] || die "$t (127.0.0.1:${PORT[$t]}) answered over HTTP/$v, want HTTP/2 (h2c)"
done
check_plugin_active --http2-prior-knowledge

declare -A RPS DONE OK FAILED NON2XX P50 P99 MEAN PCPU UCPU WCPU OCPU ALLOCS ABYTES
PROBLEMS=()
H2LOAD=(h2load -t1 -c"$CONNECTIONS" -m"$STREAMS" -d "$WORK/body.json" -H 'content-type: application/json')
bound=$((DURATION + 30))
wbound=$((WARMUP + 30))

# pct FILE P: the P-th percentile (nearest rank) of h2load's per-request
# log (3rd column, µs), in ms.
pct() {
	cut -f3 "$1" | sort -n | awk -v p="$2" '{ v[NR] = $1 } END {
		if (NR == 0) { print "—"; exit }
		r = int(NR * p / 100 + 0.999999); if (r < 1) r = 1
		printf "%.2f", v[r] / 1000 }'
}

idle_check
date_start=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
for t in "${TARGETS[@]}"; do
	url="http://127.0.0.1:${PORT[$t]}/"
	log "$t: warm-up ${WARMUP}s"
	run_bounded "$WORK/h2load-$t-warmup.txt" "$wbound" "${H2LOAD[@]}" -D "$WARMUP" "$url" ||
		die "h2load warm-up against $t failed: $(cat "$WORK/h2load-$t-warmup.txt")"
	log "$t: h2load -t1 -c$CONNECTIONS -m$STREAMS -D $DURATION -d body.json $url"
	a0=
	if [[ -n ${METRICS[$t]:-} ]]; then a0=$(allocs "${METRICS[$t]}"); fi
	p0=$(cpu_ticks "${PROXYPID[$t]}")
	u0=$(cpu_ticks "$PID_upstream")
	s0=$(busy_ticks)
	times >"$WORK/times0-$t.txt"
	run_bounded "$WORK/h2load-$t.txt" "$bound" "${H2LOAD[@]}" -D "$DURATION" --log-file="$WORK/h2load-$t.log" "$url" ||
		die "h2load against $t failed: $(cat "$WORK/h2load-$t.txt")"
	times >"$WORK/times1-$t.txt"
	s1=$(busy_ticks)
	p1=$(cpu_ticks "${PROXYPID[$t]}")
	u1=$(cpu_ticks "$PID_upstream")
	a1=
	if [[ -n ${METRICS[$t]:-} ]]; then a1=$(allocs "${METRICS[$t]}"); fi
	out=$WORK/h2load-$t.txt
	# finished in 10.00s, 12345.60 req/s, 1.23MB/s
	RPS[$t]=$(awk '/^finished in/ {printf "%.0f", $4}' "$out")
	# requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
	DONE[$t]=$(awk '/^requests:/ {print $6}' "$out")
	OK[$t]=$(awk '/^requests:/ {print $8}' "$out")
	FAILED[$t]=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
	# status codes: N 2xx, N 3xx, N 4xx, N 5xx
	NON2XX[$t]=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$out")
	MEAN[$t]=$(to_ms "$(awk '/^time for request:/ {print $6}' "$out")")
	[[ -n ${RPS[$t]} && -n ${OK[$t]} && ${OK[$t]} -gt 0 ]] || die "could not parse h2load output for $t: $(cat "$out")"
	P50[$t]=$(pct "$WORK/h2load-$t.log" 50)
	P99[$t]=$(pct "$WORK/h2load-$t.log" 99)
	PCPU[$t]=$(awk -v d=$((p1 - p0)) -v hz="$CLK_TCK" -v n="${OK[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	UCPU[$t]=$(awk -v d=$((u1 - u0)) -v hz="$CLK_TCK" -v n="${OK[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	if [[ -n $a0 ]]; then
		ALLOCS[$t]=$(per_req $((${a1% *} - ${a0% *})) "${OK[$t]}")
		ABYTES[$t]=$(per_req $((${a1#* } - ${a0#* })) "${OK[$t]}")
	else
		ALLOCS[$t]="—"
		ABYTES[$t]="—"
	fi
	WCPU[$t]=$(awk -v a="$(children_cpu "$WORK/times0-$t.txt")" -v b="$(children_cpu "$WORK/times1-$t.txt")" 'BEGIN {printf "%.1f", b - a}')
	OCPU[$t]=$(awk -v all=$((s1 - s0)) -v p=$((p1 - p0)) -v u=$((u1 - u0)) -v w="${WCPU[$t]}" -v hz="$CLK_TCK" \
		'BEGIN {printf "%.1f", (all - p - u) / hz - w}')
	log "$t: ${RPS[$t]} rps, p50 ${P50[$t]} ms, p99 ${P99[$t]} ms, allocs/req ${ALLOCS[$t]}, failed ${FAILED[$t]}, non-2xx ${NON2XX[$t]}"
	if [[ ${FAILED[$t]} != 0 || ${NON2XX[$t]} != 0 ]]; then
		PROBLEMS+=("$t: ${FAILED[$t]} failed/errored/timed-out requests, ${NON2XX[$t]} non-2xx (h2load output below)")
	fi
	for n in upstream "${TARGETS[@]}"; do
		[[ $n == upstream ]] && pid=$PID_upstream || pid=${PROXYPID[$n]}
		kill -0 "$pid" 2>/dev/null || die "$n died during the run against $t: $(tail -n 20 "$WORK/$n.log")"
	done
done

# ---------------------------------------------------------------- report
stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
mkdir -p "$BENCH/results"
result=$BENCH/results/$stamp-h2load.md
np=wasmproxy_noplugin
{
	echo "# wasmproxy h2c benchmark, $date_start"
	echo
	echo "\`bash bench/h2load.sh\`: $(h2load --version 2>&1 | head -n 1), \`-t1 -c$CONNECTIONS -m$STREAMS -D $DURATION\`, h2c with prior knowledge, POST of a 52-byte JSON body with \`content-type: application/json\`, ${WARMUP} s warm-up per target, everything on 127.0.0.1; every proxy speaks HTTP/1.1 keep-alive to the same Go upstream (bench/upstream)."
	echo
	echo "| target | rps | p50 ms | p99 ms | mean ms | × nginx | × HAProxy | failed | non-2xx | proxy CPU µs/req | allocs/req | alloc B/req | upstream CPU µs/req | h2load CPU s | other CPU s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${TARGETS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${RPS[$t]}" \
			"${P50[$t]}" "${P99[$t]}" "${MEAN[$t]}" "$(ratio "${RPS[$t]}" "${RPS[nginx]}")" "$(ratio "${RPS[$t]}" "${RPS[haproxy]}")" \
			"${FAILED[$t]}" "${NON2XX[$t]}" "${PCPU[$t]}" "${ALLOCS[$t]}" "${ABYTES[$t]}" "${UCPU[$t]}" "${WCPU[$t]}" "${OCPU[$t]}"
	done
	echo
	echo "Issue 12's targets (stated for HTTP/1.1 at 50 connections; the same bars applied to h2c here):"
	echo
	echo "| target | this run | verdict |"
	echo "|---|---|---|"
	echo "| wasmproxy no plugin ≥ 0.80× nginx rps | $(ratio "${RPS[$np]}" "${RPS[nginx]}") (× HAProxy $(ratio "${RPS[$np]}" "${RPS[haproxy]}")) | $(verdict "${RPS[$np]} >= 0.8 * ${RPS[nginx]}") |"
	echo "| proxy CPU/req no plugin ≤ 1.5× nginx's | ${PCPU[$np]} / ${PCPU[nginx]} µs = $(ratio "${PCPU[$np]}" "${PCPU[nginx]}") (× HAProxy's $(ratio "${PCPU[$np]}" "${PCPU[haproxy]}")) | $(verdict "${PCPU[$np]} <= 1.5 * ${PCPU[nginx]}") |"
	echo "| + json-validation ≥ 0.90× of no plugin | $(ratio "${RPS[wasmproxy_plugin]}" "${RPS[$np]}") | $(verdict "${RPS[wasmproxy_plugin]} >= 0.9 * ${RPS[$np]}") |"
	echo "| p99 no plugin ≤ nginx's + 1 ms | ${P99[$np]} vs ${P99[nginx]} ms | $(verdict "${P99[$np]} <= ${P99[nginx]} + 1") |"
	echo
	echo "- p50/p99: nearest-rank percentiles of h2load's per-request log (request start to end of response). rps: h2load's req/s. CPU µs/req: utime+stime from /proc/PID/stat over the measured run, divided by the requests h2load counted as succeeded. h2load CPU s: its own user+sys CPU-seconds; other CPU s: machine busy time minus proxy, upstream and h2load (foreign load)."
	echo "- allocs/req, alloc B/req: as in bench/run.sh (runtime/metrics of the wasmproxy process over the measured run, per succeeded request)."
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
	echo
	echo "## Raw h2load output"
	for t in "${TARGETS[@]}"; do
		echo
		echo "### ${LABEL[$t]} (127.0.0.1:${PORT[$t]})"
		echo
		echo '```'
		cat "$WORK/h2load-$t.txt"
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
