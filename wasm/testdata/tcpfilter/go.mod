module tcpfilter

go 1.24
