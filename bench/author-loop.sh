#!/usr/bin/env bash
# bench/author-loop.sh: how long the plugin author's loop takes on this
# machine (issue 5; results in docs/perf.md, "The plugin author's loop").
#
#   1. init → first passing test: `wasmproxy plugin init` (which runs
#      `go mod tidy`) then `go test ./...` in the new plugin, on a fresh
#      module cache (GOMODCACHE in a scratch directory, so every module is
#      downloaded from GOPROXY) with the normal build cache, then again with
#      both caches fresh. Target: ≤ 60 s.
#   2. edit → rebuild → serving: `wasmproxy run --plugin --watch` in front
#      of bench/upstream; each round rewrites the plugin's response header
#      value in main.go and times until curl sees the new value. Target:
#      ≤ 3 s.
#
# Environment:
#   ROUNDS=5        edits measured in step 2
#   SKIP_FRESH=1    skip step 1 (no downloads)
#   KEEP_WORK=1     keep the scratch directory
#
# Needs go and curl; uses loopback ports 28199 (upstream), 28100
# (listener) and 28101 (admin). Exit status 0 when every step ran, 1 on a
# setup failure or a timeout.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UPSTREAM_PORT=28199
LISTEN=127.0.0.1:28100
ADMIN=127.0.0.1:28101

log() { printf '[author-loop] %s\n' "$*" >&2; }
die() {
	printf '\n[author-loop] ERROR: %s\n\n' "$*" >&2
	exit 1
}
command -v go >/dev/null || die "go is required"
command -v curl >/dev/null || die "curl is required"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive number"

WORK=$(mktemp -d -t wasmproxy-author-loop.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		log "scratch directory kept: $WORK"
	else
		# Fresh module caches are read-only without -modcacherw.
		chmod -R u+w "$WORK" 2>/dev/null || true
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

log "building wasmproxy and the upstream"
go build -o "$WORK/wasmproxy" "$ROOT/cmd/wasmproxy"
go build -o "$WORK/upstream" "$ROOT/bench/upstream"
WASMPROXY=$WORK/wasmproxy

echo "# The plugin author's loop ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(go version | awk '{print $3}'))"
echo

# --- 1. init → first passing test --------------------------------------------
init_and_test() { # NAME GOMODCACHE GOCACHE -> prints seconds
	local name=$1 modcache=$2 gocache=$3 start end
	start=$(now)
	(
		cd "$WORK"
		GOMODCACHE=$modcache GOCACHE=$gocache GOFLAGS=-modcacherw \
			"$WASMPROXY" plugin init "example.com/$name" --wasmproxy-src "$ROOT" >"$WORK/$name-init.log" 2>&1 ||
			{ cat "$WORK/$name-init.log" >&2; exit 1; }
		cd "$name"
		GOMODCACHE=$modcache GOCACHE=$gocache GOFLAGS=-modcacherw go test ./... >"$WORK/$name-test.log" 2>&1 ||
			{ cat "$WORK/$name-test.log" >&2; exit 1; }
	) || die "init → test failed for $name"
	end=$(now)
	elapsed "$start" "$end"
}

if [[ ${SKIP_FRESH:-} != 1 ]]; then
	log "init → first passing test, fresh module cache"
	t1=$(init_and_test fresh-mod "$WORK/modcache1" "$(go env GOCACHE)")
	log "init → first passing test, fresh module and build caches"
	t2=$(init_and_test fresh-all "$WORK/modcache2" "$WORK/gocache2")
	log "init → first passing test, warm caches"
	t3=$(init_and_test warm "$(go env GOMODCACHE)" "$(go env GOCACHE)")
	echo "| init → first passing test | seconds | target |"
	echo "|---|---|---|"
	echo "| fresh module cache, warm build cache | $t1 | ≤ 60 |"
	echo "| fresh module and build caches | $t2 | ≤ 60 |"
	echo "| warm caches | $t3 | |"
	echo
fi

# --- 2. edit → rebuild → serving ----------------------------------------------
log "edit → rebuild → serving, $ROUNDS rounds"
"$WORK/upstream" -port "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
(cd "$WORK" && "$WASMPROXY" plugin init example.com/live --wasmproxy-src "$ROOT" >"$WORK/live-init.log" 2>&1) ||
	die "plugin init failed: $(cat "$WORK/live-init.log")"
LIVE=$WORK/live
"$WASMPROXY" run --plugin "$LIVE/main.wasm" --plugin-config '{"header": "x-round", "value": "0"}' \
	--upstream "http://127.0.0.1:$UPSTREAM_PORT" --listen "$LISTEN" --admin "$ADMIN" --watch \
	--cache-dir "$WORK/wazero" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)

header() { curl -s -o /dev/null -D - "http://$LISTEN/" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1) == "x-round" { print $2 }'; }
for _ in $(seq 600); do
	[[ $(header) == 0 ]] && break
	sleep 0.1
done
[[ $(header) == 0 ]] || die "the proxy did not serve the plugin: $(tail -20 "$WORK/proxy.log")"

# Each round makes the plugin ignore the configured value and send its own.
times=()
for round in $(seq "$ROUNDS"); do
	sed -i -E "s/(AddHttpResponseHeader\(h\.plugin\.conf\.Header, )[^)]*\)/\1\"$round\")/" "$LIVE/main.go"
	grep -q "conf.Header, \"$round\")" "$LIVE/main.go" || die "the scaffold's main.go changed: update the edit in this script"
	start=$(now)
	ok=0
	for _ in $(seq 1200); do
		if [[ $(header) == "$round" ]]; then
			ok=1
			break
		fi
		sleep 0.05
	done
	end=$(now)
	((ok)) || die "round $round: the edit was not served within 60 s: $(tail -20 "$WORK/proxy.log")"
	t=$(elapsed "$start" "$end")
	times+=("$t")
	log "round $round: ${t}s"
	sleep 1
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "| edit → rebuild → serving (--watch) | seconds | target |"
echo "|---|---|---|"
echo "| min | $(echo "$sorted" | head -1) | |"
echo "| median | $(echo "$sorted" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') | ≤ 3 |"
echo "| max | $(echo "$sorted" | tail -1) | |"
echo
echo "Rounds: ${times[*]} (seconds). The proxy's own account of the last swap:"
echo
echo '```'
grep "plugin rebuilt and swapped in" "$WORK/proxy.log" | tail -1
echo '```'
