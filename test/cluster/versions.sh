# Versions and paths shared by the test/cluster scripts (sourced, not run).
# shellcheck shell=bash disable=SC2034
K8S_VERSION=v1.37.2
K8S_MAJOR=1
K8S_MINOR=37
CRICTL_VERSION=v1.36.0
# the tags Kubernetes' own release build uses (hack/lib/golang.sh)
K8S_TAGS=selinux,notest,grpcnotrace

# go from the machine's usual place when PATH lacks it (sudo, CI)
command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin

MESH_CNI_CACHE=${MESH_CNI_CACHE:-/var/cache/mesh-cni}
K8S_BIN_DIR=${K8S_BIN_DIR:-$MESH_CNI_CACHE/k8s-$K8S_VERSION/bin}
# The Kubernetes build uses its own Go build cache (~4 GB), so a `go clean -cache`
# elsewhere does not cost a 12-minute rebuild, and the product's cache stays small.
K8S_GOCACHE=${K8S_GOCACHE:-$MESH_CNI_CACHE/gocache}

# Helm (deploy/helm/mesh-cni; test/helm/build-helm.sh), cached beside Kubernetes.
HELM_VERSION=${HELM_VERSION:-v3.22.0}
HELM_BIN_DIR=${HELM_BIN_DIR:-$MESH_CNI_CACHE/helm-$HELM_VERSION/bin}
