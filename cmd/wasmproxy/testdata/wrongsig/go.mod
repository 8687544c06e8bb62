module wrongsig

go 1.24
