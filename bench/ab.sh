#!/usr/bin/env bash
# bench/ab.sh OLD_BIN NEW_BIN: two wasmproxy binaries (no plugin) and
# nginx, side by side in alternating rounds, in front of the same Go
# upstream (bench/upstream): wrk -t1 -c50 POST of bench/post.lua per
# target per round, and each proxy's CPU per request from /proc.
# Prints one line per round and target, then the ratios of the sums.
# Over HTTP/1 the rw/req column is each wasmproxy's read- and
# write-family system calls per request (/proc/PID/io): a count that,
# unlike the CPU, does not move with the VM's speed.
#
# Environment: ROUNDS=3, DURATION=5s, CONNECTIONS=50; PLUGIN=1 runs
# both proxies with the json-validation plugin
# (bench/configs/wasmproxy-json-validation.yaml, the plugin built by
# NEW_BIN from examples/json-validation) instead of no plugin; with
# OLD_TREE=DIR as well, the old proxy's plugin is built by OLD_BIN from
# DIR/examples/json-validation instead, so each proxy runs the plugin
# built with its own tree's SDK (e.g. OLD_TREE=/work/main); NEW_TREE
# (default: this checkout) likewise for the new one, so the two can
# swap places to check the order of the rounds. H2=1
# loads over h2c (prior knowledge) with h2load -t1 -cCONNECTIONS
# -mSTREAMS (defaults 10 and 10, as bench/h2load.sh), the same POST
# body, nginx's h2c server (:28013) as the reference; p50/p99 are then
# h2load's mean and max request times. Loopback only; every process it
# starts is stopped at the end.
set -euo pipefail
OLD=${1:?usage: bench/ab.sh OLD_BIN NEW_BIN}
NEW=${2:?usage: bench/ab.sh OLD_BIN NEW_BIN}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
H2=${H2:-}
if [[ $H2 == 1 ]]; then
	CONNECTIONS=${CONNECTIONS:-10}
	STREAMS=${STREAMS:-10}
	NGINX_PORT=28013
else
	CONNECTIONS=${CONNECTIONS:-50}
	NGINX_PORT=28003
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/wasmproxy-ab.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 28099 28001 28011 $NGINX_PORT; do
	port_busy "$p" && { echo "port $p busy (another bench run?)" >&2; exit 1; }
done
go build -o "$WORK/upstream" "$ROOT/bench/upstream"
if [[ ${PLUGIN:-} == 1 ]]; then
	# The config names ./json-validation.wasm: the proxies run in
	# $WORK/old and $WORK/new.
	mkdir -p "$WORK/old" "$WORK/new"
	(cd "${NEW_TREE:-$ROOT}" && "$NEW" plugin build examples/json-validation -o "$WORK/new/json-validation.wasm") >&2
	if [[ -n ${OLD_TREE:-} ]]; then
		(cd "$OLD_TREE" && "$OLD" plugin build examples/json-validation -o "$WORK/old/json-validation.wasm") >&2
		echo "plugins: old built by $OLD from $OLD_TREE, new by $NEW from ${NEW_TREE:-$ROOT}"
	else
		cp "$WORK/new/json-validation.wasm" "$WORK/old/json-validation.wasm"
	fi
	sed 's/28002/28001/; s/bench_json_validation/bench_jv_old/' "$ROOT/bench/configs/wasmproxy-json-validation.yaml" >"$WORK/old.yaml"
	sed 's/28002/28011/; s/bench_json_validation/bench_jv_new/' "$ROOT/bench/configs/wasmproxy-json-validation.yaml" >"$WORK/new.yaml"
else
	cp "$ROOT/bench/configs/wasmproxy-noplugin.yaml" "$WORK/old.yaml"
	sed 's/28001/28011/; s/bench_noplugin/bench_noplugin_new/' "$ROOT/bench/configs/wasmproxy-noplugin.yaml" >"$WORK/new.yaml"
fi
mkdir -p "$WORK/nginx"
"$WORK/upstream" -port 28099 >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
mkdir -p "$WORK/old" "$WORK/new"
cd "$WORK/old"
"$OLD" -c "$WORK/old.yaml" --cache-dir "$WORK/cache-old" >"$WORK/old.log" 2>&1 & PIDS+=($!); OLD_PID=$!
cd "$WORK/new"
"$NEW" -c "$WORK/new.yaml" --cache-dir "$WORK/cache-new" >"$WORK/new.log" 2>&1 & PIDS+=($!); NEW_PID=$!
cd "$ROOT"
"$NGINX_BIN" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$ROOT/bench/configs/nginx.conf" & PIDS+=($!); NGINX_PID=$!
for p in 28099 28001 28011 $NGINX_PORT; do
	for _ in $(seq 600); do port_busy "$p" && break; sleep 0.1; done
	port_busy "$p" || { echo "nothing listens on $p" >&2; exit 1; }
done
cpu_ticks() {
	local total=0 q
	for q in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		[[ -r /proc/$q/stat ]] && total=$((total + $(sed 's/^.*) //' "/proc/$q/stat" | awk '{print $12 + $13}')))
	done
	echo "$total"
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# rw_calls PID: the process's read- and write-family system calls so far
# (/proc/PID/io syscr + syscw: read, readv, write, writev...; not
# recvfrom or sendto, which nginx uses, so nginx's column stays empty).
# A count, not a timing: it does not drift with the VM's speed.
rw_calls() { awk '/^sysc[rw]:/ {t += $2} END {print t + 0}' "/proc/$1/io" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
b0=$(busy_ticks); sleep 2; b1=$(busy_ticks)
echo "machine busy before: $(awk -v d=$((b1 - b0)) -v hz="$HZ" -v n="$(nproc)" 'BEGIN {printf "%.0f", d / hz / 2 / n * 100}')% of $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
# h2 PORT SECONDS: one bounded h2load run of the POST over h2c.
h2() {
	timeout $(($2 + 30)) h2load -t1 -c"$CONNECTIONS" -m"$STREAMS" -D "$2" -d "$WORK/body.json" \
		-H 'content-type: application/json' "http://127.0.0.1:$1/"
}
if [[ $H2 == 1 ]]; then
	command -v h2load >/dev/null || { echo "h2load is not installed (apt-get install nghttp2-client)" >&2; exit 1; }
	# bench/post.lua's body.
	printf '%s' '{"id": "xxx", "token": "xxx", "anotherField": "yyy"}' >"$WORK/body.json"
	echo "h2c: h2load -t1 -c$CONNECTIONS -m$STREAMS -D ${DURATION%s}; p50ms/p99ms columns: mean/max request time, with h2load's units"
fi
declare -A RPS_SUM CPU_SUM
printf '%-6s %-7s %9s %8s %8s %12s %9s\n' round target rps p50ms p99ms 'cpu_us/req' 'rw/req'
for r in $(seq "$ROUNDS"); do
	for t in old new nginx; do
		case $t in old) port=28001 pid=$OLD_PID ;; new) port=28011 pid=$NEW_PID ;; nginx) port=$NGINX_PORT pid=$NGINX_PID ;; esac
		if [[ $H2 == 1 ]]; then
			h2 "$port" 1 >/dev/null
			c0=$(cpu_ticks "$pid")
			h2 "$port" "${DURATION%s}" >"$WORK/h2load.txt"
			c1=$(cpu_ticks "$pid")
			rps=$(awk '/^finished in/ {sub(/,/, "", $4); printf "%.0f", $4}' "$WORK/h2load.txt")
			n=$(awk '/^requests:/ {print $8}' "$WORK/h2load.txt")
			p50=$(awk '/^time for request:/ {v = $6} END {print v}' "$WORK/h2load.txt")
			p99=$(awk '/^time for request:/ {v = $5} END {print v}' "$WORK/h2load.txt")
			cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
			awk '/^requests:/ && ($10 != 0 || $12 != 0) {exit 1} /^status codes:/ && ($5 != 0 || $7 != 0 || $9 != 0) {exit 1}' "$WORK/h2load.txt" ||
				echo "WARNING: $t had errors: $(grep -E '^(requests|status codes):' "$WORK/h2load.txt" | tr '\n' ' ')"
			printf '%-6s %-7s %9s %8s %8s %12s\n' "$r" "$t" "$rps" "$p50" "$p99" "$cpu"
			RPS_SUM[$t]=$((${RPS_SUM[$t]:-0} + rps))
			CPU_SUM[$t]=$(awk -v a="${CPU_SUM[$t]:-0}" -v b="$cpu" 'BEGIN {print a + b}')
			continue
		fi
		timeout 60 wrk -t1 -c"$CONNECTIONS" -d1s -s "$ROOT/bench/post.lua" "http://127.0.0.1:$port/" >/dev/null
		c0=$(cpu_ticks "$pid")
		s0=$(rw_calls "$pid")
		timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$ROOT/bench/post.lua" "http://127.0.0.1:$port/" >"$WORK/wrk.txt"
		c1=$(cpu_ticks "$pid")
		s1=$(rw_calls "$pid")
		rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/wrk.txt")
		n=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
		p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")
		p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
		cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
		rw=—
		[[ $t != nginx ]] && rw=$(awk -v d=$((s1 - s0)) -v n="$n" 'BEGIN {printf "%.2f", d / n}')
		grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.txt" && echo "WARNING: $t had errors: $(grep 'Non-2xx\|Socket errors' "$WORK/wrk.txt")"
		printf '%-6s %-7s %9s %8s %8s %12s %9s\n' "$r" "$t" "$rps" "$p50" "$p99" "$cpu" "$rw"
		RPS_SUM[$t]=$((${RPS_SUM[$t]:-0} + rps))
		CPU_SUM[$t]=$(awk -v a="${CPU_SUM[$t]:-0}" -v b="$cpu" 'BEGIN {print a + b}')
	done
done
awk -v o="${RPS_SUM[old]}" -v n="${RPS_SUM[new]}" -v x="${RPS_SUM[nginx]}" -v co="${CPU_SUM[old]}" -v cn="${CPU_SUM[new]}" -v cx="${CPU_SUM[nginx]}" 'BEGIN {
	printf "rps: new/old %.2fx, old/nginx %.2fx, new/nginx %.2fx\n", n / o, o / x, n / x
	printf "cpu/req: new/old %.2fx, old/nginx %.2fx, new/nginx %.2fx\n", cn / co, co / cx, cn / cx }'
echo "machine load after: $(cut -d' ' -f1-3 /proc/loadavg)"
