# mesh-cni — the README's commands: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$(PATH)
export CGO_ENABLED := 0
GO      ?= go
LDFLAGS := -s -w
BIN     := bin

# Debian packages the tests and the demo run for real: iptables (legacy and
# nft), the CNI reference plug-ins in /usr/lib/cni, ip and nsenter.
DEB_PACKAGES := iptables containernetworking-plugins iproute2 util-linux

.PHONY: all build deps test test-unit demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/mesh-cni ./cmd/mesh-cni
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/install-cni ./cmd/install-cni
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/standin ./test/standin
	@ls -l $(BIN)

# Install what is missing (as root); a no-op on a machine that has it all.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		[ "$$(id -u)" = 0 ] || { echo "need root to apt-get install$$missing"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ "$$(id -u)" = 0 ] || { echo "make test needs root: it creates network namespaces and iptables rules"; exit 1; }

# Unit, golden, real-netns, real-traffic and real-chain tests.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 10m ./...
	@left=$$(ip netns list | grep -E '^(mcni|mcbench|mcdemo)-' || true); [ -z "$$left" ] || { echo "tests left network namespaces behind: $$left"; exit 1; }

test-unit:
	$(GO) test -count=1 ./pkg/...

demo: deps
	$(GO) run ./test/demo

# ADD latency against the floor (docs/bench.md), then install-cni's
# re-insert latency after a primary CNI rewrites its file.
bench: deps
	$(GO) run ./bench $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench BenchmarkRepairLatency -benchtime 200x ./pkg/installer

clean:
	rm -rf $(BIN)
