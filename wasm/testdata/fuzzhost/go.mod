module fuzzhost

go 1.24
