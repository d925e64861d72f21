#!/usr/bin/env bash
# Build the helm CLI from the Go module proxy into a versioned cache directory
# beside the Kubernetes build (test/cluster/build-k8s.sh). A second run with the
# cache present costs nothing.
#
# Env:
#   MESH_CNI_CACHE  cache root (default /var/cache/mesh-cni)
#   HELM_VERSION    helm.sh/helm/v3 version (default from test/cluster/versions.sh)
#   HELM_BUILD_P    parallel compile jobs (default 2)
#   HELM_FORCE=1    rebuild even if the cache is complete
# Prints the helm binary's path as the last line of stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../cluster/versions.sh
. "$HERE/../cluster/versions.sh"

BIN=$HELM_BIN_DIR
STAMP="$BIN/.complete"
P=${HELM_BUILD_P:-2}

log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ ${HELM_FORCE:-0} != 1 && -x $BIN/helm && -f $STAMP ]] &&
	grep -q "helm=$HELM_VERSION " "$STAMP"; then
	log "cached: $BIN/helm ($(cat "$STAMP"))"
	echo "$BIN/helm"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$(dirname "$BIN")"
# Build into a scratch GOBIN and move the binary in last: a build stopped
# half-way never leaves a helm that the cache check would accept.
WORK=$(mktemp -d "$(dirname "$BIN")/.build-helm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Its own Go build cache, like the Kubernetes build: a `go clean -cache`
# elsewhere does not cost a rebuild, and the two builds share most of client-go.
export GOMAXPROCS=$P CGO_ENABLED=0 GOFLAGS="-buildvcs=false" GOCACHE=$K8S_GOCACHE GOBIN=$WORK
t0=$SECONDS
log "building helm.sh/helm/v3/cmd/helm@$HELM_VERSION (-p $P; cold: ~5-10 min on 2 cores)"
# version.version is what `helm version` prints (helm's own Makefile sets it);
# `go install pkg@version` runs outside any local module, as helm's own release does.
nice -n 10 go install -p "$P" -trimpath \
	-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mkdir -p "$BIN"
mv -f "$WORK/helm" "$BIN/helm"
echo "helm=$HELM_VERSION go=$(go env GOVERSION) built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$((SECONDS - t0))" >"$STAMP"
log "done in $((SECONDS - t0))s: $("$BIN/helm" version --short 2>/dev/null || echo '?')"
echo "$BIN/helm"
