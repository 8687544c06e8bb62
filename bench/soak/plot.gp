# gnuplot -e "csv='soak.csv'; out='soak.png'" bench/soak/plot.gp
# CSV columns: t_s,rps,requests,errors,rss_kib,threads,runtime_errors,vm_reloads,goroutines,idle_goroutines
set datafile separator ","
set terminal pngcairo size 900,640 font ",9" noenhanced
set output out
set key autotitle columnhead top left
set multiplot layout 2,1 title "wasmproxy soak: json-validation + chaos (panic every 1,000th request, FAIL_RELOAD)"
set xlabel "time (s)"
set ylabel "rps"
set y2label "errors per 10 s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot csv using 1:2 with linespoints pt 7 ps 0.4 title "rps", \
     csv using 1:4 axes x1y2 with linespoints pt 6 ps 0.4 title "non-2xx + socket errors (right)"
set ylabel "RSS (MiB)"
set y2label "threads, goroutines"
plot csv using 1:($5/1024) with linespoints pt 7 ps 0.4 title "RSS MiB", \
     csv using 1:6 axes x1y2 with linespoints pt 6 ps 0.4 title "OS threads (right)", \
     csv using 1:9 axes x1y2 with linespoints pt 5 ps 0.4 title "goroutines under load (right)", \
     csv using 1:10 axes x1y2 with linespoints pt 4 ps 0.4 title "goroutines idle (right)"
unset multiplot
