#!/usr/bin/env bash
# Build the Kubernetes binaries the local test cluster needs, from the Go module
# proxy, into a versioned cache directory. A second run with the cache present
# costs nothing.
#
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl  (k8s.io/kubernetes)
#   crictl                                                                 (sigs.k8s.io/cri-tools)
#
# Env:
#   MESH_CNI_CACHE  cache root (default /var/cache/mesh-cni)
#   K8S_BUILD_P     parallel compile jobs (default 2)
#   K8S_FORCE=1     rebuild even if the cache is complete
#   K8S_GOCACHE     Go build cache for this build (default $MESH_CNI_CACHE/gocache)
# Prints the bin directory as the last line of stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$HERE/versions.sh"

BIN=$K8S_BIN_DIR
P=${K8S_BUILD_P:-2}
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
ALL=("${K8S_CMDS[@]}" crictl)
STAMP="$BIN/.complete"
WANT_STAMP="kubernetes=$K8S_VERSION cri-tools=$CRICTL_VERSION go=$(go env GOVERSION)"

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

complete() {
	[[ -f $STAMP ]] || return 1
	# Any Go toolchain is fine for a cached build; only the versions matter.
	grep -q "kubernetes=$K8S_VERSION cri-tools=$CRICTL_VERSION" "$STAMP" || return 1
	local b
	for b in "${ALL[@]}"; do [[ -x $BIN/$b ]] || return 1; done
}

if [[ ${K8S_FORCE:-0} != 1 ]] && complete; then
	log "cached: $BIN ($(cat "$STAMP"))"
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$(dirname "$BIN")"
WORK=$(mktemp -d "$(dirname "$BIN")/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"

export GOMAXPROCS=$P CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" GOCACHE=$K8S_GOCACHE
NICE=(nice -n 10)

# progress: go build -v prints one line per package it compiles; count them
# against the number of packages that need compiling (an estimate: the whole
# dependency graph, less what the build cache already holds shows as fewer
# lines and a faster finish).
progress() {
	local total=$1 label=$2 start=$SECONDS n=0 last=0 line
	while IFS= read -r line; do
		case $line in
		*" "* | "") printf '%s\n' "$line" >&2 ;; # errors and warnings pass through
		*)
			n=$((n + 1))
			if ((SECONDS - last >= 15)); then
				last=$SECONDS
				log "$label: compiled $n/~$total packages, $((SECONDS - start))s elapsed"
			fi
			;;
		esac
	done
	log "$label: compiled $n packages in $((SECONDS - start))s"
}

t0=$SECONDS
grep -q "sigs.k8s.io/cri-tools $CRICTL_VERSION\$" "$HERE/k8s/crictl/go.mod" ||
	{ log "k8s/crictl/go.mod does not require cri-tools $CRICTL_VERSION (versions.sh)"; exit 1; }
have_k8s=1
for b in "${K8S_CMDS[@]}"; do [[ -x $BIN/$b ]] || have_k8s=0; done
if ((have_k8s)) && [[ ${K8S_FORCE:-0} != 1 ]]; then
	log "kubernetes binaries already in $BIN"
else
cd "$HERE/k8s"
log "downloading modules for k8s.io/kubernetes $K8S_VERSION (first run: ~1 GB)"
"${NICE[@]}" go mod download
pkgs=()
for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
total=$(go list -deps -tags "$K8S_TAGS" "${pkgs[@]}" | wc -l)

date_=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
	ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date_"
done

log "building ${K8S_CMDS[*]} ($total packages, -p $P, cold build takes ~12 min on 2 cores)"
set +e
"${NICE[@]}" go build -v -p "$P" -trimpath -tags "$K8S_TAGS" -ldflags "$ld" -o "$WORK/bin/" "${pkgs[@]}" 2>&1 |
	progress "$total" kubernetes
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || { log "kubernetes build failed (rc=$rc)"; exit "$rc"; }

# keep what is built even if a later step fails (the next run relinks only)
mkdir -p "$BIN"
for b in "${K8S_CMDS[@]}"; do mv -f "$WORK/bin/$b" "$BIN/$b"; done
fi

log "building crictl (sigs.k8s.io/cri-tools $CRICTL_VERSION, module k8s/crictl)"
cd "$HERE/k8s/crictl"
"${NICE[@]}" go mod download
total=$(go list -deps sigs.k8s.io/cri-tools/cmd/crictl | wc -l)
set +e
"${NICE[@]}" go build -v -p "$P" -trimpath \
	-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
	-o "$WORK/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl 2>&1 | progress "$total" crictl
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || { log "crictl build failed (rc=$rc)"; exit "$rc"; }
mv -f "$WORK/bin/crictl" "$BIN/crictl"
echo "$WANT_STAMP built=$date_ seconds=$((SECONDS - t0))" >"$STAMP"
log "done in $((SECONDS - t0))s: $(du -sh "$BIN" | cut -f1) in $BIN"
"$BIN/kubectl" version --client 2>/dev/null | head -1 >&2 || true
echo "$BIN"
