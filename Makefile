# Switchyard — the two commands a newcomer needs:
#   make demo   (root: builds two network namespaces and runs two daemons)
#   make test   (unit tests, and the namespace tests when run as root)

GO      ?= go
BIN     := bin/switchyard
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
COUNT   ?= 5
RESULTS := bench/results

# A failing benchmark must fail the run even when its output goes through tee.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: build test demo bench vet clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchyard

vet:
	$(GO) vet ./...
	$(GO) vet -tags testprotocols ./cmd/switchyard
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Everything, with the race detector. The namespace tests in cmd/switchyard
# need root; without it they skip and say why.
test: vet
	$(GO) test -race -count=1 ./...

demo: build
	./$(BIN) demo

# Micro benchmarks, $(COUNT) runs each, summarised as medians (min–max) next
# to the goals. Raw output: $(RESULTS)/micro.txt.
bench: build
	@mkdir -p $(RESULTS)
	$(GO) test -run '^$$' -count $(COUNT) -benchtime 300ms \
		-bench 'Lookup|Classify|Split$$|EnqueueDequeue|SendBatch' \
		./router/ ./actors/mailbox/ ./protocols/udp/ | tee $(RESULTS)/micro.txt
	$(GO) test -run '^$$' -count $(COUNT) -benchtime 1s -bench 'Pipeline' \
		./actors/node/ | tee -a $(RESULTS)/micro.txt
	./$(BIN) bench micro $(RESULTS)/micro.txt

clean:
	rm -rf bin $(RESULTS)/micro.txt
