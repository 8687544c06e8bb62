module callouts

go 1.24
