module cowmem

go 1.24
