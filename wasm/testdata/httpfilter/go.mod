module httpfilter

go 1.24
