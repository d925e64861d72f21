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

.PHONY: all build deps api-deps test test-unit demo demo-netns bench fuzz clean k8s-binaries cluster-up cluster-down e2e helm helm-lint helm-test

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/mesh-cni ./cmd/mesh-cni
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/install-cni ./cmd/install-cni
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-mesh_cni ./cmd/kubectl-mesh_cni
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

# What the real-API-server tests (test/nodeagent) need: Debian's etcd, whose
# maintainer scripts must not start the packaged service (policy-rc.d), and
# kube-apiserver from the local-cluster build (cached; the first build takes
# ~20 min, so CI runs it as its own step before make test).
api-deps: deps
	@command -v etcd >/dev/null || { \
		prc=/usr/sbin/policy-rc.d; made=0; \
		[ -e $$prc ] || { printf '#!/bin/sh\nexit 101\n' >$$prc && chmod +x $$prc && made=1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null; \
		rc=$$?; [ $$made = 1 ] && rm -f $$prc; exit $$rc; }
	@test/cluster/build-k8s.sh >/dev/null

# Unit, golden, real-netns, real-traffic, real-chain and real-API-server tests,
# and the Helm chart's (test/helm: lint, golden renders, schema, no drift).
test: deps api-deps helm-lint
	$(GO) vet ./...
	MESH_CNI_REQUIRE_API=1 MESH_CNI_REQUIRE_HELM=1 $(GO) test -count=1 -timeout 14m ./...
	@left=$$(ip netns list | grep -E '^(mcni|mcbench|mcdemo)-' || true); [ -z "$$left" ] || { echo "tests left network namespaces behind: $$left"; exit 1; }

test-unit:
	$(GO) test -count=1 ./pkg/...

# helm from the Go module proxy, cached beside the Kubernetes build
# (/var/cache/mesh-cni/helm-<version>; ~3 min the first time, then free).
HELM_BIN = $(shell . test/cluster/versions.sh && echo $$HELM_BIN_DIR/helm)
helm:
	@test/helm/build-helm.sh >/dev/null

# The chart (deploy/helm/mesh-cni): helm lint --strict at its defaults and
# with each platform profile.
helm-lint: helm
	@for f in "" deploy/helm/mesh-cni/profiles/*.yaml; do \
		$(HELM_BIN) lint --strict deploy/helm/mesh-cni -n mesh-cni-system $${f:+-f $$f} >/dev/null || { echo "helm lint --strict $$f failed:"; $(HELM_BIN) lint --strict deploy/helm/mesh-cni -n mesh-cni-system $${f:+-f $$f}; exit 1; }; \
	done; echo "helm lint --strict: chart OK (defaults and $$(ls deploy/helm/mesh-cni/profiles | wc -l) profiles)"

# The chart's tests alone: lint, golden renders (-update: go test ./test/helm
# -run TestGolden -update), schema refusals, no drift from deploy/.
helm-test: helm k8s-binaries
	MESH_CNI_REQUIRE_HELM=1 $(GO) test -count=1 ./test/helm/

# The seed's "Verify the iptables rules" on a real one-node cluster: cluster up
# (Kubernetes builds once, ~12-20 min, then cached), deploy/, Bookinfo, the nat
# table found the seed's way, one redirected request; the cluster stays up.
demo: deps build
	test/e2e/demo.sh

# The same verification without a cluster: the real CNI chain through libcni
# in network namespaces, with a read-only pod server for the API.
demo-netns: deps
	$(GO) run ./test/demo

# Local one-node Kubernetes (docs/cluster.md), binaries cached in /var/cache/mesh-cni.
k8s-binaries:
	test/cluster/build-k8s.sh
cluster-up:
	test/cluster/up.sh
cluster-down:
	test/cluster/down.sh

# deploy/ and the seed's Bookinfo on that cluster; tears it down and checks the
# host is as it was. Ends with "e2e: N passed, N failed".
e2e: deps build
	test/e2e/e2e.sh

# ADD latency against the floor (docs/bench.md), then install-cni's
# re-insert latency after a primary CNI rewrites its file.
bench: deps
	$(GO) run ./bench $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench BenchmarkRepairLatency -benchtime 200x ./pkg/installer

# Every fuzz target for FUZZTIME each (default 30s; FUZZ=regexp narrows);
# `make test` already replays their seed corpora.
fuzz: deps
	test/fuzz.sh

clean:
	rm -rf $(BIN)
