module missingimport

go 1.24
