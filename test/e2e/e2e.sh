#!/usr/bin/env bash
# End-to-end test of mesh-cni on the real one-node cluster (test/cluster):
# the installer DaemonSet from deploy/, the plug-in called by containerd in the
# CNI chain, the seed's Bookinfo with a stand-in sidecar injected as Istio
# would. Brings the cluster up (cached binaries after the first run) and, unless
# E2E_KEEP_CLUSTER=1, tears it down at the end and checks the host is restored.
#
# Needs root, `make build` (bin/install-cni, bin/mesh-cni) and deploy/.
# Ends with "N passed, N failed"; exit 0 only when nothing failed.
#
# Env: E2E_KEEP_CLUSTER=1  leave the cluster (and everything deployed) running
#      SEED_DIR            where the seeds are (default ../shared/seeds)
set -uo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$E2E_DIR/lib.sh"

T0=$SECONDS

pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'PASS: %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL: %s\n' "$*"; }
check() { # desc cmd...
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else bad "$desc"; fi
}
step() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - T0))"; }

finish() {
	local rc=$?
	if [[ ${E2E_KEEP_CLUSTER:-0} == 1 ]]; then
		log "E2E_KEEP_CLUSTER=1: cluster left running"
		cat "$STATE/hint" 2>/dev/null
	else
		if ((fail > 0 || rc != 0)); then
			step "diagnostics (a check failed)"
			kubectl_ get pods -A -o wide 2>&1 | head -40
			kubectl_ logs -n "${ds_ns:-mesh-cni-system}" "ds/${ds_name:-mesh-cni-node}" --tail=40 2>&1
			echo "--- containerd log, CNI lines:"
			grep -iE 'cni|mesh' "$LOGS/containerd.log" 2>/dev/null | tail -n 30
			export CLUSTER_KEEP_LOGS=${CLUSTER_KEEP_LOGS:-$MESH_CNI_CACHE/last-e2e-logs}
		fi
		step "tear down"
		if "$CLUSTER_DIR/down.sh" >&2; then ok "host restored after the cluster (processes, netns, chains, sysctls, files)"
		else bad "host restored after the cluster"; fi
	fi
	((rc != 0 && pass + fail == 0)) && fail=1
	echo
	echo "e2e: $pass passed, $fail failed"
	((fail == 0)) || exit 1
	exit 0
}

e2e_preflight
# helm for the chart's install path (helm.sh): cached, ~3 min the first time
"$REPO_ROOT/test/helm/build-helm.sh" >/dev/null || die "building helm (test/helm/build-helm.sh)"

step "cluster up"
"$CLUSTER_DIR/up.sh" >&2 || die "cluster-up failed"
trap finish EXIT
rm -rf "$WORK" && mkdir -p "$WORK"

step "images"
e2e_images
e2e_prepare_deploy

# ---------------------------------------------------------------- deploy/
step "kubectl apply --dry-run=server -k deploy/"
# A server-side dry run cannot create a namespace and objects in it at once
# (the namespace is not really created, so the rest is NotFound): apply
# deploy/'s Namespace objects first, then dry-run all of deploy/.
jq -c 'if .kind == "List" then .items[] else . end | select(.kind == "Namespace")' "$WORK/deploy.json" |
	kubectl_ apply -f - >&2
check "the real API server accepts deploy/ (kubectl apply --dry-run=server -k deploy/)" \
	kubectl_ apply --dry-run=server -k "$DEPLOY"

step "install: kubectl apply -k deploy/ (image $orig_image = $INSTALL_IMAGE)"
kubectl_ apply -k "$DEPLOY" >&2
# This cluster has no kube-proxy and gives pods no default route: the node
# agent in the DaemonSet pod reaches the API server at the bridge address
# (test/cluster/up.sh DNATs it), the way a real cluster's service IP works.
kubectl_ set env -n "$ds_ns" "ds/$ds_name" KUBERNETES_SERVICE_HOST="$POD_GATEWAY" KUBERNETES_SERVICE_PORT=443 >&2
check "DaemonSet $ds_ns/$ds_name rolled out" \
	kubectl_ rollout status -n "$ds_ns" "ds/$ds_name" --timeout=120s
check "installer put mesh-cni in $CNI_BIN_DIR" wait_for "mesh-cni binary" 60 test -x "$CNI_BIN_DIR/mesh-cni"
check "installer chained mesh-cni into the primary conflist" wait_for "mesh-cni in the conflist" 60 conflist_has_mesh
KCFG=$(plugin_kubeconfig)
check "installer wrote the plug-in's kubeconfig ($KCFG)" test -s "${KCFG:-/nonexistent}"

# ---------------------------------------------------------------- Bookinfo
step "Bookinfo from the seed, stand-in sidecar injected"
e2e_bookinfo_kustomization
kubectl_ apply -k "$WORK/bookinfo" >&2
for a in details ratings reviews productpage; do
	check "bookinfo $a Ready" wait_ready default "app=$a"
done

step "productpage's netns holds exactly the seed's rules"
PP=$(pod_of default app=productpage)
PP_PID=$(pod_pid default "$PP")
echo "productpage pod $PP, istio-proxy pid $PP_PID; nsenter -t $PP_PID -n iptables -t nat -L -n -v --line-numbers -x:"
nsenter -t "$PP_PID" -n iptables -t nat -L -n -v --line-numbers -x
grep -E '^-A ' "$SEED_RULES" >"$WORK/want.rules"
nat_rules "$PP_PID" >"$WORK/got.rules"
# chain by chain, in order (iptables-save may order chains differently)
canon() { awk '{c=$2; print c "\t" (++n[c]) "\t" $0}' "$1" | sort -k1,1 -k2,2n | cut -f3-; }
if diff <(canon "$WORK/want.rules") <(canon "$WORK/got.rules") >"$WORK/rules.diff"; then
	ok "productpage nat table == $(basename "$SEED_RULES") ($(wc -l <"$WORK/want.rules") rules)"
else
	bad "productpage nat table differs from the seed:"
	cat "$WORK/rules.diff"
fi

step "real traffic through the sidecar"
REV=$(pod_of default app=reviews)
REV_IP=$(pod_ip default "$REV")
PP_IP=$(pod_ip default "$PP")
out=$(kubectl_ exec -n default "$PP" -c productpage -- standin dial "$REV_IP:9080" 2>&1)
echo "productpage -> reviews $REV_IP:9080: $out"
check "productpage -> reviews lands on productpage's sidecar 15001 with the original destination" \
	grep -q "port=15001 orig=$REV_IP:9080" <<<"$out"
out=$("$STANDIN" dial "$PP_IP:9080" 2>&1)
echo "host -> productpage $PP_IP:9080: $out"
check "inbound to productpage:9080 lands on the sidecar's 15006 with the original destination" \
	grep -q "port=15006 orig=$PP_IP:9080" <<<"$out"
out=$(kubectl_ exec -n default "$PP" -c istio-proxy -- standin dial "$REV_IP:9080" 2>&1)
check "the sidecar's own outbound traffic (UID 1337) is not redirected (reaches reviews' inbound 15006)" \
	grep -q "port=15006 orig=$REV_IP:9080" <<<"$out"

step "Istio's injection shapes (issue 12)"
# every Bookinfo pod ran istio-validation as UID 1337 before its app
for a in details ratings reviews productpage; do
	for p in $(kubectl_ get pod -n default -l "app=$a" -o jsonpath='{.items[*].metadata.name}'); do
		code=$(kubectl_ get pod -n default "$p" -o jsonpath="{.status.initContainerStatuses[?(@.name=='istio-validation')].state.terminated.exitCode}")
		if [[ $code == 0 ]]; then ok "$p: istio-validation proved the redirect before the app started"
		else bad "$p: istio-validation exit code '$code' (want 0)"; fi
	done
done
check "productpage's istio-proxy is a native sidecar (init container, restartPolicy Always)" \
	test "$(kubectl_ get pod -n default "$PP" -o jsonpath="{.spec.initContainers[?(@.name=='istio-proxy')].restartPolicy}")" = Always
DET=$(pod_of default app=details)
out=$("$STANDIN" dial "$(pod_ip default "$DET"):9080" 2>&1)
check "details (istio-proxy among the containers, the older injection) is meshed: inbound lands on 15006" \
	grep -q "port=15006 orig=" <<<"$out"
# an istio-init pod programs its own rules: mesh-cni must leave it alone
# (its istio-init stand-in proves nothing is captured)
kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: e2e-istio-init, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: istio-init, image: $PROXY_IMAGE, args: [validate, --want, none], securityContext: $ISTIO_SECURITY_CONTEXT}
  containers:
  - {name: app, image: $APP_IMAGE, securityContext: {runAsUser: 1000}}
  - {name: istio-proxy, image: $PROXY_IMAGE, args: [proxy, sidecar], securityContext: $ISTIO_SECURITY_CONTEXT}
EOF
if wait_ready default pod/e2e-istio-init; then
	if has_istio_chains "$(pod_pid default e2e-istio-init)"; then bad "the istio-init pod has no ISTIO rules"
	else ok "the istio-init pod is left alone (Ready, no ISTIO rules)"; fi
else bad "the istio-init pod is Ready"; fi
# the validation is a real check: where mesh-cni does not redirect (an
# excluded namespace), an injected pod must fail to start
kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: e2e-validation-fails, namespace: kube-system, annotations: {sidecar.istio.io/status: '$ISTIO_STATUS'}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: istio-validation, image: $PROXY_IMAGE, args: [validate, --timeout, 2s], securityContext: $ISTIO_SECURITY_CONTEXT}
  - {name: istio-proxy, image: $PROXY_IMAGE, args: [proxy, sidecar], restartPolicy: Always, securityContext: $ISTIO_SECURITY_CONTEXT}
  containers:
  - {name: app, image: $APP_IMAGE, securityContext: {runAsUser: 1000}}
EOF
check "an injected pod mesh-cni does not redirect fails istio-validation and never starts" \
	wait_for "e2e-validation-fails Failed" 120 bash -c "[[ \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pod -n kube-system e2e-validation-fails -o jsonpath='{.status.phase}') == Failed ]]"
kubectl_ delete pod -n default e2e-istio-init --wait=false >/dev/null 2>&1
kubectl_ delete pod -n kube-system e2e-validation-fails --wait=false >/dev/null 2>&1

# shellcheck source=agent.sh
. "$E2E_DIR/agent.sh"

step "pods that must not be meshed"
test_pod kube-system e2e-excluded-ns yes
test_pod default e2e-no-sidecar no
test_pod default e2e-inject-false yes '{sidecar.istio.io/inject: "false"}'
for p in kube-system/e2e-excluded-ns default/e2e-no-sidecar default/e2e-inject-false; do
	wait_ready "${p%/*}" "pod/${p#*/}" || { bad "$p Ready"; continue; }
	pid=$(pod_pid "${p%/*}" "${p#*/}" app)
	if has_istio_chains "$pid"; then bad "$p has no ISTIO rules"; else ok "$p has no ISTIO rules"; fi
done

step "RBAC of the plug-in's kubeconfig"
if [[ -s ${KCFG:-} ]]; then
	can() { kubectl_ --kubeconfig "$KCFG" auth can-i "$@" 2>/dev/null; }
	kk() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KCFG" "$@"; }
	check "plug-in kubeconfig can get pods" can get pods -n default
	check "plug-in kubeconfig gets the productpage pod for real" kk get pod -n default "$PP" -o name
	if can list secrets -A; then bad "plug-in kubeconfig cannot list secrets"; else ok "plug-in kubeconfig cannot list secrets"; fi
	if kk get secrets -A >/dev/null 2>&1; then bad "listing secrets is refused"; else ok "listing secrets is refused"; fi
	if can create pods -n default; then bad "plug-in kubeconfig cannot create pods"; else ok "plug-in kubeconfig cannot create pods"; fi
	# the plug-in has its own service account, whose token install-cni mints
	# (deploy/serviceaccount-plugin.yaml), not the DaemonSet's
	plugin_sa=$(kubectl_ get ds -n "$ds_ns" "$ds_name" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="PLUGIN_SERVICE_ACCOUNT")].value}')
	who=$(kk auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null)
	if [[ -n $plugin_sa && $who == "system:serviceaccount:$ds_ns:$plugin_sa" ]]; then ok "plug-in kubeconfig authenticates as its own service account ($who)"
	else bad "plug-in kubeconfig authenticates as system:serviceaccount:$ds_ns:${plugin_sa:-?}; it is: ${who:-unauthenticated}"; fi
	if can list pods -n default; then bad "plug-in kubeconfig cannot list pods"; else ok "plug-in kubeconfig cannot list pods (the agent's watch is not its)"; fi
	if can create events -n default; then bad "plug-in kubeconfig cannot create events"; else ok "plug-in kubeconfig cannot create events"; fi
	# everything beyond what any service account may do (system:basic-user,
	# system:discovery, ...): must be exactly "get pods", the plug-in's
	# fallback when the node agent cannot answer (docs/agent.md)
	rules() { grep -v '^Resources' | awk '{$1=$1; print}' | sort; }
	nobody=(--as=system:serviceaccount:"$ds_ns":e2e-nobody --as-group=system:serviceaccounts
		--as-group=system:serviceaccounts:"$ds_ns" --as-group=system:authenticated)
	extra=$(comm -13 <(kubectl_ auth can-i --list -n default "${nobody[@]}" | rules) <(kk auth can-i --list -n default | rules))
	want='pods [] [] [get]'
	if [[ $extra == "$want" ]]; then ok "plug-in kubeconfig grants exactly: get pods"
	else bad "plug-in kubeconfig grants exactly get pods; it grants: $extra"; fi
else
	bad "RBAC checks: no plug-in kubeconfig"
fi

step "drift repair: the primary conflist is overwritten"
mesh_conf=$(grep -l '"mesh-cni"' "$CNI_CONF_DIR"/*.conflist | head -1)
cp "$mesh_conf" "$WORK/conflist.before"
jq '.plugins |= map(select(.type != "mesh-cni"))' "$WORK/conflist.before" >"$mesh_conf.tmp" && mv "$mesh_conf.tmp" "$mesh_conf"
check "installer restored mesh-cni in $mesh_conf" wait_for "drift repair" 60 grep -q '"mesh-cni"' "$mesh_conf"
test_pod default e2e-after-drift yes
if wait_ready default pod/e2e-after-drift; then
	check "a pod created right after the repair gets the rules" has_istio_chains "$(pod_pid default e2e-after-drift)"
else
	bad "e2e-after-drift Ready"
fi

# shellcheck source=taint.sh
. "$E2E_DIR/taint.sh"

# shellcheck source=operator.sh
. "$E2E_DIR/operator.sh"

step "uninstall: kubectl delete -k deploy/"
kubectl_ delete -k "$DEPLOY" --wait=true --timeout=120s >&2
wait_for "installer pods gone" 120 bash -c "[[ -z \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $ds_ns -o name 2>/dev/null | grep ${ds_name}) ]]"
check "mesh-cni binary removed from the node" wait_for "binary gone" 60 test ! -e "$CNI_BIN_DIR/mesh-cni"
check "mesh-cni entry removed from the conflist" wait_for "entry gone" 60 bash -c "! grep -qs '\"mesh-cni\"' $CNI_CONF_DIR/*.conflist"
check "plug-in kubeconfig removed" test ! -e "${KCFG:-/nonexistent}"
check "primary conflist still there" test -s "$PRIMARY_CONFLIST"
test_pod default e2e-after-uninstall yes
if wait_ready default pod/e2e-after-uninstall; then
	if has_istio_chains "$(pod_pid default e2e-after-uninstall)"; then bad "a new pod starts unmeshed after uninstall"; else ok "a new pod starts unmeshed after uninstall"; fi
else
	bad "e2e-after-uninstall Ready"
fi

# shellcheck source=repair_inplace.sh
. "$E2E_DIR/repair_inplace.sh"

# the Helm install path (needs Bookinfo and mesh-cni uninstalled; leaves it so)
# shellcheck source=helm.sh
. "$E2E_DIR/helm.sh"

kubectl_ delete -k "$WORK/bookinfo" --wait=false >/dev/null 2>&1
kubectl_ delete pod -n default e2e-no-sidecar e2e-inject-false e2e-after-drift e2e-after-uninstall --wait=false >/dev/null 2>&1
kubectl_ delete pod -n kube-system e2e-excluded-ns --wait=false >/dev/null 2>&1

# shellcheck source=repair.sh
. "$E2E_DIR/repair.sh"
true
