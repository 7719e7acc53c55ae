# Switchyard — the two commands a newcomer needs:
#   make demo   (root: builds two network namespaces and runs two daemons)
#   make test   (unit tests, and the namespace tests when run as root)
# Both first run `make deps`: the Debian packages of deps/debian.txt.

GO      ?= go
BIN     := bin/switchyard
LAB     := bin/switchyard-lab
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
COUNT   ?= 5
RESULTS := bench/results

# A failing benchmark must fail the run even when its output goes through tee.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: build test demo bench vet clean fuzz deps soak

# bin/switchyard is the daemon and operator CLI; bin/switchyard-lab the
# demo, the benchmark harness and the test tools (it runs bin/switchyard).
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchyard
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(LAB) ./cmd/switchyard-lab

vet:
	$(GO) vet ./...
	$(GO) vet -tags testprotocols ./cmd/switchyard
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=freebsd $(GO) build ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The Debian packages the demo, the tests and the benchmark need, from the
# one list deps/debian.txt (CI installs the same). As root, installs what is
# missing; otherwise prints it and the command, and goes on. DRY=1 prints
# the packages it would install, one a line.
deps:
	@deps/install $(if $(filter 1,$(DRY)),--dry-run)

# Everything, with the race detector. The namespace tests in cmd/switchyard
# need root; without it they skip and say why. internal/testsummary prints
# go test's usual lines, then one line for the tests skipped because a tool
# or capability is missing (which fails the run in CI, CI=true), then
# "N passed, N failed, N skipped". Without a C compiler (gcc, make deps)
# there is no -race: said, and an error in CI.
test: deps vet
	@$(GO) build -o bin/testsummary ./internal/testsummary
	@race=-race; if [ "$$($(GO) env CGO_ENABLED)" != 1 ]; then \
		echo "make test: no C compiler (gcc; make deps installs it): the tests run WITHOUT the race detector"; \
		if [ "$$CI" = true ]; then exit 1; fi; race=; fi; \
	$(GO) test $$race -count=1 -json ./... | bin/testsummary

demo: deps build
	./$(LAB) demo

# The config loader's fuzz target for a fixed short time (CI runs it as
# is); FUZZTIME=10m for a longer hunt. Failing inputs land in
# config/testdata/fuzz/FuzzLoad and then run with every `go test`.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./config/

# The benchmark harness (BENCHMARKS.md): micro benchmarks, $(COUNT) runs each,
# summarised as medians (min–max) next to the goals (raw output:
# $(RESULTS)/micro.txt), then the end-to-end part in network namespaces
# (root; iperf3): veth, a wireguard-go pair, a bare TUN↔UDP forwarder pair
# and every switchyard configuration, each compared case interleaved with its
# reference, with idle and loaded ping latency; it writes
# $(RESULTS)/latest.{json,md,png}, latest-sweep.png and latest-latency.png
# (the published results: commit them with BENCHMARKS.md).
# QUICK=1 is a smoke run of under two minutes (CI) into $(RESULTS)/quick/,
# so it never replaces the published results. Extra flags for `switchyard
# bench e2e` go in E2E='--runs 5 --seconds 20'.
MICRO_TIME := 300ms
PIPE_TIME  := 1s
E2E_FLAGS  := --runs 3 --seconds 10
OUT        := $(RESULTS)
ifeq ($(QUICK),1)
COUNT      := 1
MICRO_TIME := 20ms
PIPE_TIME  := 100ms
E2E_FLAGS  := --quick
OUT        := $(RESULTS)/quick
endif

bin/wireguard-go: go.mod
	$(GO) build -trimpath -o $@ golang.zx2c4.com/wireguard

bench: build bin/wireguard-go
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -count $(COUNT) -benchtime $(MICRO_TIME) \
		-bench 'Lookup|Classify|Split$$|EnqueueDequeue|SendBatch|Envelope' \
		./router/ ./actors/mailbox/ ./protocols/udp/ ./actors/remote/ | tee $(OUT)/micro.txt
	$(GO) test -run '^$$' -count $(COUNT) -benchtime $(PIPE_TIME) -bench 'Pipeline' \
		./node/ | tee -a $(OUT)/micro.txt
	$(GO) test -run '^$$' -count $(COUNT) -benchtime $(MICRO_TIME) -bench 'Crossing|CopyFloor|SocketFloor' \
		./actors/remote/shm/ | tee -a $(OUT)/micro.txt
	./$(LAB) bench micro $(OUT)/micro.txt
	./$(LAB) bench e2e $(E2E_FLAGS) $(E2E) --micro $(OUT)/micro.txt \
		--wireguard-go bin/wireguard-go --out $(OUT)

# The soak (issue 20): side a's udp tunnel on a spawned protocol host under
# paced TCP load for $(SOAK_TIME), with reloads, host kills, a SIGSTOP and
# sha256-checked transfers; then exact conservation per tunnel, one re-open
# per kill, no drift of goroutines, fds or pool. Writes
# $(RESULTS)/soak/soak.{txt,json,png} and exits non-zero when a check fails.
# CI runs SOAK_TIME=3m. Extra flags: SOAK='--transport grpc --rate 800M'.
SOAK_TIME ?= 10m
soak: build
	./$(LAB) soak --duration $(SOAK_TIME) --out $(RESULTS)/soak $(SOAK)

clean:
	rm -rf bin $(RESULTS)/micro.txt $(RESULTS)/quick
