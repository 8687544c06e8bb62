# bench/soak/summary.awk: the summary of a soak CSV (bench/soak.sh).
#   awk -F, -v interval=10 -v conns=50 -v died=0 -f bench/soak/summary.awk soak.csv
# "Flat" compares every sample after the first minute (warm-up: pools,
# caches and the heap settle) with the median of those samples; RSS is
# judged on per-minute means, idle goroutines on every sample. Exits 3
# when a checked row is not within ±10%, or the proxy died.
NR == 1 || $1 == 0 { next }
{ n++; t[n] = $1; rps[n] = $2; req += $3; err += $4; rss[n] = $5; thr[n] = $6; rt = $7; rl = $8; gor[n] = $9; idle[n] = $10 }
function median(a, from, to,   b, k, i, j, x) {
	k = 0; for (i = from; i <= to; i++) b[++k] = a[i]
	for (i = 2; i <= k; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
	return k % 2 ? b[(k + 1) / 2] : (b[k / 2] + b[k / 2 + 1]) / 2
}
function span(a, from, to, label, check,   m, lo, hi, i) {
	m = median(a, from, to); lo = hi = a[from]
	for (i = from; i <= to; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
	printf "| %s | %s | %s | %s | %+.1f%% / %+.1f%% |\n", label, m, lo, hi, (lo / m - 1) * 100, (hi / m - 1) * 100
	if (check && (lo < 0.9 * m || hi > 1.1 * m)) bad = 1
}
END {
	from = int(60 / interval) + 1; if (from > n) from = 1
	printf "soak: %d s in %d samples of %d s, %d connections; %d requests, %d errors (%.3f%%); chaos runtime_errors %d, vm_reload_success %d\n\n", \
		t[n], n, interval, conns, req, err, req ? err * 100 / req : 0, rt, rl
	printf "| after the first minute | median | min | max | min / max vs median |\n|---|---:|---:|---:|---:|\n"
	span(rps, from, n, "rps", 0)
	span(rss, from, n, "RSS KiB, each sample", 0)
	# RSS at one instant moves with the garbage collector (the heap grows
	# to twice the live data before a cycle); a leak moves the mean.
	per = int(60 / interval); if (per < 1) per = 1
	m = 0
	for (i = from; i + per - 1 <= n; i += per) { sum = 0; for (j = i; j < i + per; j++) sum += rss[j]; mean[++m] = int(sum / per) }
	if (m > 0) span(mean, 1, m, "RSS KiB, per-minute mean", 1); else span(rss, from, n, "RSS KiB", 1)
	span(thr, from, n, "OS threads", 0)
	span(gor, from, n, "goroutines under load", 0)
	span(idle, from, n, "goroutines idle", 1)
	printf "\nfirst sample: rps %s, RSS %s KiB, threads %s; last: rps %s, RSS %s KiB, threads %s\n", rps[1], rss[1], thr[1], rps[n], rss[n], thr[n]
	if (died) print "\n**the proxy died**"
	exit bad || died ? 3 : 0
}
