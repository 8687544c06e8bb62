#!/usr/bin/env bash
# bench/plugin-targets.sh: issue 16's targets side by side in one run, on
# one tree, one after the other (never at once: each would load the
# others' CPUs):
#
#   1. start-up of the seed config, exec → /ready 200, cold and warm
#      (bench/startup.sh, RUNS starts each, median): cold ≤ 1 s, warm ≤ 30 ms
#   2. Pss per pooled instance of the seed plugin for 1, 2, 8 and 32
#      instances after warm-up traffic (bench/jsoncmp BenchmarkInstanceRSS):
#      ≤ 4 MiB each
#   3. the seed's JSON validation as a Wasm plugin against the native Go
#      filter (bench/jsoncmp.sh): ≥ 0.9×
#   4. the seed plugin against no plugin, and both against nginx and
#      HAProxy (bench/run.sh): ≥ 0.9× of no plugin
#
# Environment: RUNS=5 (start-ups), ROUNDS=3 (jsoncmp rounds),
# DURATION=10s (per wrk run in 3 and 4). Loopback only; each script stops
# what it starts. Writes bench/results/plugin-targets-<time>.md and prints
# it; the scripts' own outputs sit beside it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p bench/results
OUT=bench/results/plugin-targets-$stamp
log() { printf '[plugin-targets] %s\n' "$*" >&2; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

log "1/4 start-up (bench/startup.sh, RUNS=$RUNS)"
RUNS=$RUNS bash bench/startup.sh >"$OUT-startup.txt"
cold=$(awk '/^cold/ {c = 1} c && /^this/ {print $3; exit}' "$OUT-startup.txt")
warm=$(awk '/^warm/ {c = 1} c && /^this/ {print $3; exit}' "$OUT-startup.txt")

log "2/4 Pss per instance (BenchmarkInstanceRSS)"
(cd bench/jsoncmp && go test -run '^$' -bench '^BenchmarkInstanceRSS$' -benchtime 1x .) >"$OUT-rss.txt"
# pss_for N REQUESTS: KiB of Pss growth per instance for N instances.
pss_for() {
	awk -v n="instances=$1-" -v r="requests=$2/" 'index($1, r) && index($1, n) {
		for (i = 2; i < NF; i++) if ($(i + 1) == "pss-KiB/instance") { print $i; exit } }' "$OUT-rss.txt"
}

log "3/4 Wasm against native (bench/jsoncmp.sh, ROUNDS=$ROUNDS)"
DURATION=$DURATION ROUNDS=$ROUNDS bash bench/jsoncmp.sh >"$OUT-jsoncmp.txt"
jsonratio=$(sed -n 's/^Wasm \/ native: \*\*\([0-9.]*\)×.*/\1/p' "$OUT-jsoncmp.txt")

log "4/4 plugin against no plugin, nginx, HAProxy (bench/run.sh)"
DURATION=$DURATION bash bench/run.sh >"$OUT-run.txt" || true
plugin_row=$(grep -F '| + json-validation ≥ 0.90× of no plugin' "$OUT-run.txt" || echo "| + json-validation | (run.sh failed: see $OUT-run.txt) | — |")

verdict() { awk "BEGIN { exit !($1) }" && echo met || echo "**not met**"; }
{
	echo "# Issue 16 targets, one run ($stamp)"
	echo
	echo "Tree $(git rev-parse --short HEAD) ($(git status --porcelain | wc -l) uncommitted paths), $(nproc) CPUs, load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Outputs: $OUT-{startup,rss,jsoncmp,run}.txt"
	echo
	echo "| target | this run | verdict |"
	echo "|---|---|---|"
	echo "| cold start ≤ 1,000 ms (median of $RUNS) | $cold ms | $(verdict "$cold <= 1000") |"
	echo "| warm start ≤ 30 ms (median of $RUNS) | $warm ms | $(verdict "$warm <= 30") |"
	# Growth / N includes what a module costs once (its compiled code
	# and wazero's structures); the slope between 8 and 32 instances is
	# what one more instance costs.
	for n in 1 2 8 32; do
		p=$(pss_for "$n" 200)
		echo "| Pss growth / N ≤ 4 MiB, $n instances after 200 requests each (once-per-module part included) | ${p:-?} KiB | $(verdict "${p:-1e9} <= 4096") |"
	done
	slope=$(awk -v a="$(pss_for 8 200)" -v b="$(pss_for 32 200)" 'BEGIN { if (a > 0 && b > 0) printf "%.0f", (32 * b - 8 * a) / 24 }')
	echo "| Pss of one more instance ≤ 4 MiB (slope from 8 to 32 instances) | ${slope:-?} KiB | $(verdict "${slope:-1e9} <= 4096") |"
	echo "| Wasm ≥ 0.9× native (bench/jsoncmp.sh) | ${jsonratio:-?}× | $(verdict "${jsonratio:-0} >= 0.9") |"
	echo "$plugin_row"
} | tee "$OUT.md"
