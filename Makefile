# overlayd — make targets. `make demo` and `make test` are the two that matter.
GO       ?= go
BIN      := bin/overlayd
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/overlayd/overlayd/node.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1
# Packages whose tests are heavy on two cores run one at a time.
TESTFLAGS ?= -p 1 -timeout 15m

.PHONY: all build demo test unit cross lint bench bench-compare fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/overlayd
	$(GO) build -trimpath -ldflags "-X main.buildVersion=$(VERSION)" -o bin/overlayd-cni ./cmd/overlayd-cni

## demo: build overlayd and run its rootless three-node tour (bin/overlayd demo --keep stays up)
demo: build
	./$(BIN) demo

## test: gofmt, vet, staticcheck, every test (network-namespace tests too when root), cross-builds
test: lint unit cross

unit:
	$(GO) test $(TESTFLAGS) ./...

## cross: the binary builds for macOS and 64-bit ARM Linux
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/overlayd
	GOOS=darwin GOARCH=amd64 $(GO) build -o /dev/null ./cmd/overlayd
	GOOS=linux GOARCH=arm64 $(GO) build -o /dev/null ./cmd/overlayd
	@echo "cross-builds ok: darwin/arm64 darwin/amd64 linux/arm64"

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: go test -bench suites, then (as root) the comparisons with the kernel, wireguard-go and dnsmasq
bench:
	$(GO) test -run '^$$' -bench . -skip 'Compare' -benchmem ./bench/ ./vxlan/ ./router/ ./lb/... ./endpoint/
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) bench-compare; else echo "bench-compare skipped: needs root for network namespaces"; fi

## bench-compare: (root) iperf3 over veth, kernel vxlan, overlayd tun and wireguard-go in one run, and veth, kernel vxlan and overlayd tun with IPv6 inside and under; the rootless pair beside wireguard-go's netstack pair; two endpoints of one node beside a veth pair; dnsperf vs dnsmasq
## (BenchmarkCompareRootless, beside slirp4netns and pasta, needs Debian's slirp4netns and passt: go test -run '^$' -bench CompareRootless -benchtime 1x ./bench/)
bench-compare:
	$(GO) test -run "^$$" -bench 'CompareTunnels|CompareRootlessPair|CompareEndpoints|CompareDnsperf' -benchtime 1x -timeout 15m ./bench/

## fuzz: run each fuzz target for a while (FUZZTIME=30s)
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$(go list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

clean:
	rm -rf bin
