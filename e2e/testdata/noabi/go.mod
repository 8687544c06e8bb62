module noabi

go 1.24
