#!/usr/bin/env bash
# `make demo` on the real one-node cluster: what the seed's "Verify the
# iptables rules" section does by hand, without a manual step. Cluster up
# (binaries cached after the first run), the installer DaemonSet from deploy/,
# the seed's Bookinfo with a stand-in sidecar, productpage's nat table as the
# seed shows it, one redirected request. The cluster is left running.
#
# Needs root, `make build` (bin/install-cni, bin/mesh-cni) and deploy/.
set -euo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$E2E_DIR/lib.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

e2e_preflight
say "1. a one-node Kubernetes $K8S_VERSION on this machine (first run builds it: ~12-20 min)"
"$CLUSTER_DIR/up.sh" >&2
mkdir -p "$WORK"
e2e_images
e2e_prepare_deploy

say "2. install mesh-cni: kubectl apply -k deploy/"
show "kubectl apply -k deploy/"
kubectl_ apply -k "$DEPLOY"
kubectl_ rollout status -n "$ds_ns" "ds/$ds_name" --timeout=120s
wait_for "mesh-cni in the conflist" 60 conflist_has_mesh || die "the installer did not chain mesh-cni"
echo "node: $(jq -c '[.plugins[].type]' "$PRIMARY_CONFLIST") in $PRIMARY_CONFLIST"

say "3. the seed's Bookinfo (stand-in apps; a stand-in istio-proxy sidecar, as Istio injects it)"
e2e_bookinfo_kustomization
show "kubectl apply -f bookinfo.yaml"
kubectl_ apply -k "$WORK/bookinfo"
for a in details ratings reviews productpage; do wait_ready default "app=$a" || die "bookinfo $a not Ready"; done
kubectl_ get pods -n default -o wide

say "4. productpage's iptables rules, found the way the seed finds them"
ns=default
podname=$(pod_of default app=productpage)
# istio-proxy is a native sidecar (as Istio injects it today): its status is
# among the init containers', where the seed's command (containerStatuses)
# does not look
show "container_id=\$(kubectl get pod -n $ns $podname -o jsonpath=\"{.status.initContainerStatuses[?(@.name=='istio-proxy')].containerID}\" | sed -n 's/containerd:\\/\\/\\(.*\\)/\\1/p')"
container_id=$(kubectl_ get pod -n "$ns" "$podname" -o jsonpath="{.status.initContainerStatuses[?(@.name=='istio-proxy')].containerID}" | sed -n 's/containerd:\/\/\(.*\)/\1/p')
echo "$container_id"
show "crictl inspect \$container_id | jq \".info.pid\""
pid=$(crictl_ inspect "$container_id" | jq ".info.pid")
echo "$pid"
show "nsenter -t $pid -n iptables -L -t nat -n -v --line-numbers -x"
nsenter -t "$pid" -n iptables -L -t nat -n -v --line-numbers -x
if [[ $(iptables -V) == *v1.8.9* ]]; then
	echo "(this host's iptables 1.8.9 prints the prot column as numbers with -n: 6 = tcp, 0 = all)"
fi

say "5. one redirected request: productpage -> reviews:9080 lands on productpage's sidecar (15001)"
rev=$(pod_of default app=reviews)
rev_ip=$(pod_ip default "$rev")
show "kubectl exec $podname -c productpage -- standin dial $rev_ip:9080"
out=$(kubectl_ exec -n default "$podname" -c productpage -- standin dial "$rev_ip:9080")
echo "$out"
if [[ $out == *"port=15001 orig=$rev_ip:9080"* ]]; then
	echo "-> the app's connection to $rev_ip:9080 was redirected to the sidecar, which sees the original destination"
else
	die "the request was not redirected"
fi

say "the cluster is still running"
cat "$STATE/hint"
