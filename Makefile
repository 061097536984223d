# Urva Connect server. `make run` builds and starts the embedded default
# (SQLite, built-in TURN, sandbox providers); `make test` runs every test.

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 10s
PKGS     ?= ./...
CMDS     := $(notdir $(patsubst %/,%,$(wildcard cmd/*/)))

.PHONY: all build run test bench proto lint fuzz clean screenshot

all: build

## build: bin/urva and every other command under cmd/, with the version stamped in
build:
	@mkdir -p bin
	@for c in $(CMDS); do \
		echo "go build -o bin/$$c ./cmd/$$c"; \
		$(GO) build -ldflags "$(LDFLAGS)" -o bin/$$c ./cmd/$$c || exit 1; \
	done

## run: build, then serve the embedded default configuration
run: build
	bin/urva serve --config config.yaml

## test: go vet, then every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

## bench: the go benchmarks (no tests), then the load suite (cmd/urva-load):
## one table on stdout, BENCH_JSON written; BENCH_DURATION per scenario,
## BENCH_SCENARIOS and BENCH_FLAGS (e.g. -sockets 50000 -rms 1000) adjust it
BENCH_DURATION  ?= 5s
BENCH_JSON      ?= bench.json
BENCH_SCENARIOS ?= ceiling,ingest-sqlite,ingest-mysql,naive,outbound,statuses,e2e,idle,turn
BENCH_FLAGS     ?=
bench: build
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	bin/urva-load suite -server bin/urva -duration $(BENCH_DURATION) -scenarios $(BENCH_SCENARIOS) -json $(BENCH_JSON) $(BENCH_FLAGS)

## proto: regenerate actors/msg from msg.proto
proto:
	@command -v protoc >/dev/null 2>&1 || { \
		echo "protoc not found: install it with 'apt-get install protobuf-compiler'" >&2; exit 1; }
	@command -v protoc-gen-go >/dev/null 2>&1 || { \
		echo "protoc-gen-go not found: install it with 'go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12'" >&2; \
		echo "and make sure \$$(go env GOPATH)/bin is on PATH" >&2; exit 1; }
	protoc --go_out=. --go_opt=paths=source_relative actors/msg/msg.proto

## lint: gofmt must list nothing, go vet must pass
lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: run every fuzz target (found with go test -list) for FUZZTIME each; PKGS narrows it
fuzz:
	@list=$$(mktemp); trap 'rm -f "$$list"' EXIT; \
	$(GO) test -list '^Fuzz' $(PKGS) > "$$list" || { cat "$$list"; exit 1; }; \
	awk '/^Fuzz/ { names = names " " $$1; next } /^ok/ { if (names != "") print $$2 names; names = "" }' "$$list" | \
	while read -r pkg targets; do \
		for f in $$targets; do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin

## screenshot: docs/console.png, the console after a short chat (needs chromium)
screenshot:
	URVA_SCREENSHOT=$(CURDIR)/docs/console.png $(GO) test -count=1 -run 'TestBrowserConsoleChatWithTheSandboxPhone' ./transport/httpapi/
