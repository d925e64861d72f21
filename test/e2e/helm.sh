# Issue 11: the Helm chart (deploy/helm/mesh-cni) as the alternative install
# path, on the real cluster. Sourced by e2e.sh after `kubectl delete -k deploy/`
# and before Bookinfo is removed: the same assertions as the kustomize path
# (a new productpage pod gets exactly the seed's rules, real traffic is
# redirected, uninstall leaves the node clean), plus what only Helm does
# (an upgrade with a changed value rolls the DaemonSet; the schema refuses a
# bad value, naming the key) and a server-side dry run of the default render
# and of every platform profile.
# shellcheck shell=bash

HELM=${HELM:-$HELM_BIN_DIR/helm}
CHART=$REPO_ROOT/deploy/helm/mesh-cni
HNS=mesh-cni-system
helm_() { "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
# ds_checksum: the pod template's checksum/config annotation
ds_checksum() { kubectl_ get ds -n "$HNS" mesh-cni-node -o jsonpath='{.spec.template.metadata.annotations.checksum/config}'; }
ds_pods() { kubectl_ get pods -n "$HNS" -l app.kubernetes.io/name=mesh-cni-node -o jsonpath='{.items[*].metadata.name}'; }
# entry_excludes NS: the installed mesh-cni entry excludes namespace NS
entry_excludes() {
	cat "$CNI_CONF_DIR"/*.conflist 2>/dev/null |
		jq -se --arg ns "$1" 'map(.plugins[]? | select(.type == "mesh-cni") | .excludeNamespaces // [] | index($ns) != null) | any' >/dev/null
}

step "helm install mesh-cni deploy/helm/mesh-cni -n $HNS --create-namespace (helm $("$HELM" version --short 2>/dev/null))"
# As a newcomer types it, plus this cluster's one quirk as a value: the API
# server at the bridge address (no kube-proxy; the kustomize path sets the
# same with kubectl set env). The image is the chart's default, the name
# deploy/ gives it, under which e2e_prepare_deploy imported the one built here.
cat >"$WORK/helm-e2e-values.yaml" <<EOF
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "$POD_GATEWAY"}
  - {name: KUBERNETES_SERVICE_PORT, value: "443"}
EOF
check "namespace $HNS is gone after the kustomize uninstall (helm creates it)" \
	wait_for "namespace $HNS gone" 60 bash -c "! $K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get ns $HNS"
if helm_ install mesh-cni "$CHART" -n "$HNS" --create-namespace -f "$WORK/helm-e2e-values.yaml" --wait --timeout 120s >&2; then
	ok "helm install mesh-cni (release deployed, DaemonSet ready)"
else
	bad "helm install mesh-cni"
fi
check "the chart's default image is deploy/'s ($orig_image, the image built here)" \
	test "$(kubectl_ get ds -n "$HNS" mesh-cni-node -o jsonpath='{.spec.template.spec.containers[0].image}')" = "$orig_image"
check "helm: installer put mesh-cni in $CNI_BIN_DIR" wait_for "mesh-cni binary" 60 test -x "$CNI_BIN_DIR/mesh-cni"
check "helm: installer chained mesh-cni into the primary conflist" wait_for "mesh-cni in the conflist" 60 conflist_has_mesh
HKCFG=$(plugin_kubeconfig)
check "helm: installer wrote the plug-in's kubeconfig (${HKCFG:-none})" test -s "${HKCFG:-/nonexistent}"

step "helm: a new productpage pod gets exactly the seed's rules"
kubectl_ delete pod -n default "$PP" --wait=false >/dev/null
wait_for "old productpage gone" 60 bash -c "! $K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pod -n default $PP"
if wait_ready default app=productpage; then
	HPP=$(pod_of default app=productpage)
	nat_rules "$(pod_pid default "$HPP")" >"$WORK/helm-got.rules"
	if diff <(canon "$WORK/want.rules") <(canon "$WORK/helm-got.rules") >"$WORK/helm-rules.diff"; then
		ok "helm: new productpage $HPP nat table == the seed's ($(wc -l <"$WORK/want.rules") rules)"
	else
		bad "helm: new productpage $HPP nat table differs from the seed:"
		cat "$WORK/helm-rules.diff"
	fi
	HPP_IP=$(pod_ip default "$HPP")
	REV=$(pod_of default app=reviews)
	REV_IP=$(pod_ip default "$REV")
	out=$(kubectl_ exec -n default "$HPP" -c productpage -- standin dial "$REV_IP:9080" 2>&1)
	check "helm: productpage -> reviews lands on productpage's sidecar 15001 with the original destination ($out)" \
		grep -q "port=15001 orig=$REV_IP:9080" <<<"$out"
	out=$("$STANDIN" dial "$HPP_IP:9080" 2>&1)
	check "helm: inbound to productpage:9080 lands on the sidecar's 15006 with the original destination ($out)" \
		grep -q "port=15006 orig=$HPP_IP:9080" <<<"$out"
else
	bad "helm: the new productpage pod is Ready"
fi

step "helm upgrade: a changed excludeNamespaces rolls the DaemonSet"
kubectl_ create namespace e2e-helm-excluded >/dev/null
test_pod e2e-helm-excluded e2e-before-upgrade yes
if wait_ready e2e-helm-excluded pod/e2e-before-upgrade; then
	check "before the upgrade, a meshed pod in e2e-helm-excluded gets the rules" \
		has_istio_chains "$(pod_pid e2e-helm-excluded e2e-before-upgrade)"
else
	bad "e2e-before-upgrade Ready"
fi
sum0=$(ds_checksum) pods0=$(ds_pods)
if helm_ upgrade mesh-cni "$CHART" -n "$HNS" --reuse-values --set 'excludeNamespaces={kube-system,e2e-helm-excluded}' --wait --timeout 120s >&2; then
	ok "helm upgrade --set excludeNamespaces={kube-system,e2e-helm-excluded}"
else
	bad "helm upgrade --set excludeNamespaces"
fi
sum1=$(ds_checksum)
check "the pod template's checksum/config changed (${sum0:0:12} -> ${sum1:0:12})" \
	test -n "$sum0" -a -n "$sum1" -a "$sum0" != "$sum1"
check "DaemonSet rolled out after the upgrade" kubectl_ rollout status -n "$HNS" ds/mesh-cni-node --timeout=120s
wait_for "old installer pods gone" 60 bash -c "[[ -z \$(comm -12 <(tr ' ' '\n' <<<'$pods0' | sort) <($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $HNS -l app.kubernetes.io/name=mesh-cni-node -o name | sed 's|pod/||' | sort)) ]]"
pods1=$(ds_pods)
check "a new installer pod replaced the old one ($pods0 -> $pods1)" \
	bash -c '[[ -n $1 && -n $0 && -z $(comm -12 <(tr " " "\n" <<<"$0" | sort) <(tr " " "\n" <<<"$1" | sort)) ]]' "$pods0" "$pods1"
check "the installed mesh-cni entry now excludes e2e-helm-excluded" wait_for "entry excludes the namespace" 60 entry_excludes e2e-helm-excluded
test_pod e2e-helm-excluded e2e-after-upgrade yes
if wait_ready e2e-helm-excluded pod/e2e-after-upgrade; then
	if has_istio_chains "$(pod_pid e2e-helm-excluded e2e-after-upgrade)"; then bad "after the upgrade, a meshed pod in e2e-helm-excluded is left alone (it has ISTIO rules)"
	else ok "after the upgrade, a meshed pod in e2e-helm-excluded is left alone (no ISTIO rules)"; fi
else
	bad "e2e-after-upgrade Ready"
fi

step "helm: a bad value is refused by the schema, naming the key"
rev0=$(helm_ status mesh-cni -n "$HNS" -o json | jq -r .version)
out=$(helm_ upgrade mesh-cni "$CHART" -n "$HNS" --reuse-values --set failurePolicy=block --set repairMode=yes 2>&1); rc=$?
echo "$out" | head -6
check "helm upgrade --set failurePolicy=block refused (rc $rc), naming /failurePolicy" \
	bash -c '[[ $0 != 0 ]] && grep -q "at '"'"'/failurePolicy'"'"': value must be one of '"'"'Block'"'"', '"'"'Alert'"'"'" <<<"$1"' "$rc" "$out"
check "... and naming repairMode" grep -q "repairMode" <<<"$out"
check "the refused upgrade changed nothing (release revision $rev0)" \
	test "$(helm_ status mesh-cni -n "$HNS" -o json | jq -r .version)" = "$rev0"
out=$(helm_ install mesh-cni-bad "$CHART" -n e2e-helm-bad --create-namespace --set failurePolicy=block 2>&1); rc=$?
check "helm install --set failurePolicy=block refused (rc $rc), naming /failurePolicy" \
	bash -c '[[ $0 != 0 ]] && grep -q "at '"'"'/failurePolicy'"'"'" <<<"$1"' "$rc" "$out"
check "... leaving no release and no namespace behind" \
	bash -c '[[ -z $("$0" --kubeconfig "$1" list -A -q -f mesh-cni-bad) ]] && ! "$2" --kubeconfig "$1" get ns e2e-helm-bad' "$HELM" "$KUBECONFIG_ADMIN" "$K8S_BIN_DIR/kubectl"

step "helm uninstall: the node is left clean"
helm_ uninstall mesh-cni -n "$HNS" --wait --timeout 120s >&2
wait_for "installer pods gone" 120 bash -c "[[ -z \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $HNS -o name 2>/dev/null | grep mesh-cni-node) ]]"
check "helm: mesh-cni binary removed from the node" wait_for "binary gone" 60 test ! -e "$CNI_BIN_DIR/mesh-cni"
check "helm: mesh-cni entry removed from the conflist" wait_for "entry gone" 60 bash -c "! grep -qs '\"mesh-cni\"' $CNI_CONF_DIR/*.conflist"
check "helm: plug-in kubeconfig removed" test ! -e "${HKCFG:-/nonexistent}"
check "helm: primary conflist still there" test -s "$PRIMARY_CONFLIST"
left=$(kubectl_ get clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding -o name 2>/dev/null | grep mesh-cni)
check "helm: no cluster-scoped mesh-cni object left (${left:-none})" test -z "$left"
test_pod default e2e-after-helm-uninstall yes
if wait_ready default pod/e2e-after-helm-uninstall; then
	if has_istio_chains "$(pod_pid default e2e-after-helm-uninstall)"; then bad "helm: a new pod starts unmeshed after uninstall"
	else ok "helm: a new pod starts unmeshed after uninstall"; fi
else
	bad "e2e-after-helm-uninstall Ready"
fi

step "helm template | kubectl apply --dry-run=server: default, every profile, every repair mode"
# the (now empty) release namespace exists: helm left it
dry_run() { # name helm-args...
	local name=$1 out
	shift
	if out=$("$HELM" template mesh-cni "$CHART" -n "$HNS" "$@" 2>&1 | kubectl_ apply --dry-run=server -f - 2>&1); then
		ok "the real API server accepts helm template ($name): $(grep -c 'created (server dry run)' <<<"$out") objects"
	else
		bad "the real API server accepts helm template ($name):"
		echo "$out" | grep -v 'server dry run' | head -10
	fi
}
dry_run defaults
for f in "$CHART"/profiles/*.yaml; do dry_run "profile $(basename "$f" .yaml)" -f "$f"; done
for m in label repair off; do dry_run "repairMode=$m" --set repairMode=$m; done

# leave no release namespace behind: a later install (kubectl apply -k) must
# not meet it Terminating
kubectl_ delete pod -n default e2e-after-helm-uninstall --wait=false >/dev/null 2>&1
kubectl_ delete namespace e2e-helm-excluded "$HNS" --wait=true --timeout=90s >/dev/null 2>&1
true
