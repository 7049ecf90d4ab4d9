# Every target that needs PostgreSQL uses DATABASE_URL / TEST_DATABASE_URL when set and
# otherwise starts (and afterwards stops) a local throwaway cluster: see scripts/pg.sh.
GO        ?= go
PKGS      ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build test test-short lint db-up db-down db-destroy run demo bench chaos clean

all: lint build

build:
	$(GO) build -o bin/consumer ./cmd/consumer
	$(GO) build -o bin/example-worker ./cmd/example-worker

test:
	scripts/with-db.sh $(GO) test $(TESTFLAGS) $(PKGS)

# golangci-lint is pinned in tools/go.mod and built by the Go toolchain: nothing else to install.
# It runs gofmt and go vet among its linters (.golangci.yml says which and why).
lint:
	$(GO) tool -modfile=tools/go.mod golangci-lint run ./...

db-up:
	scripts/pg.sh start
	@echo "DATABASE_URL=$$(scripts/pg.sh url)"

db-down:
	scripts/pg.sh stop

db-destroy:
	scripts/pg.sh destroy

# The consumer and the example worker on the local cluster (Ctrl-C stops both).
run: build
	KEEP_DB=1 scripts/with-db.sh scripts/run.sh

# Everything started, workflows of every template submitted, progress and a summary.
demo:
	scripts/with-db.sh $(GO) run ./cmd/demo

# The performance figures with their baselines, measured in one run (results in .bench/;
# see docs/performance.md).
bench:
	scripts/with-db.sh $(GO) run ./cmd/bench

# The full fault-injection suite (a short version runs inside make test).
chaos:
	scripts/with-db.sh $(GO) run ./cmd/chaos

clean:
	rm -rf bin .bench .chaos
