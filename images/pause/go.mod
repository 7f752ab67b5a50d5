module github.com/inferops/inferops/images/pause

go 1.22
