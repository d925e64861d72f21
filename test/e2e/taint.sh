# Readiness taint (issue 9, docs/taint.md), sourced by e2e.sh once the
# install is verified and before the uninstall.
# shellcheck shell=bash
# Uses: ok/bad/check/step, kubectl_, wait_for, test_pod, pod_pid,
# has_istio_chains, conflist_has_mesh, ds_ns, ds_name, NODE_NAME, WORK.

TAINT_KEY=mesh-cni.io/not-ready
AWAY_LABEL=mesh-cni.io/e2e-away
node_taints() { kubectl_ get node "$NODE_NAME" -o jsonpath='{range .spec.taints[*]}{.key}={.value}:{.effect}{"\n"}{end}'; }
node_tainted() { node_taints | grep -q "^$TAINT_KEY="; }
ds_pods() { kubectl_ get pods -n "$ds_ns" -l app.kubernetes.io/name=mesh-cni-node -o name 2>/dev/null; }
# restore the DaemonSet's own nodeSelector (the original template comes back)
ds_home() { kubectl_ patch ds -n "$ds_ns" "$ds_name" --type merge -p "{\"spec\":{\"template\":{\"spec\":{\"nodeSelector\":{\"$AWAY_LABEL\":null}}}}}" >/dev/null; }

step "readiness taint: the node is tainted while the agent is away"
# The node as it registers with the taint (kubelet --register-with-taints),
# and no agent on it: the DaemonSet moved away by a nodeSelector nothing
# matches (its pod's cleanup removes our entry, as on a fresh node).
kubectl_ taint node "$NODE_NAME" "$TAINT_KEY=true:NoSchedule" --overwrite >/dev/null
kubectl_ patch ds -n "$ds_ns" "$ds_name" --type merge -p "{\"spec\":{\"template\":{\"spec\":{\"nodeSelector\":{\"$AWAY_LABEL\":\"true\"}}}}}" >/dev/null
check "the DaemonSet pod is gone from the node" wait_for "DaemonSet pods gone" 120 bash -c "[[ -z \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $ds_ns -l app.kubernetes.io/name=mesh-cni-node -o name 2>/dev/null) ]]"
if conflist_has_mesh; then bad "no mesh-cni entry while the agent is away"; else ok "no mesh-cni entry while the agent is away (a fresh node)"; fi
check "node $NODE_NAME carries $TAINT_KEY=true:NoSchedule" node_tainted

test_pod default e2e-taint-pending yes
unschedulable() {
	[[ $(kubectl_ get pod -n default e2e-taint-pending -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}') == Unschedulable ]]
}
if wait_for "e2e-taint-pending Unschedulable" 60 unschedulable; then
	msg=$(kubectl_ get pod -n default e2e-taint-pending -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')
	echo "scheduler: $msg"
	# the scheduler does not name the taint: ours is the node's only one
	taints=$(node_taints)
	if [[ $msg == *"untolerated taint"* && $taints == "$TAINT_KEY=true:NoSchedule" ]]; then
		ok "a meshed pod stays Pending while the agent is not ready: untolerated taint, the node's only taint is $TAINT_KEY"
	else bad "the meshed pod is unschedulable because of $TAINT_KEY alone: $msg (node taints: $taints)"; fi
else
	bad "a meshed pod stays Pending (Unschedulable) while the agent is not ready; phase $(kubectl_ get pod -n default e2e-taint-pending -o jsonpath='{.status.phase}')"
fi
sleep 3
check "still Pending, never started without the redirect" \
	test "$(kubectl_ get pod -n default e2e-taint-pending -o jsonpath='{.status.phase}/{.spec.nodeName}')" = "Pending/"

step "readiness taint: the agent comes back, lifts the taint, the pod starts redirected"
# first seen (polled every ~0.1 s + the kubectl calls): the DaemonSet pod
# Ready as the API server has it, and the taint gone
observe_lift() {
	local ready='' lifted='' end=$((SECONDS + 120)) now
	while ((SECONDS < end)) && [[ -z $ready || -z $lifted ]]; do
		now=$(date +%s.%N)
		if [[ -z $ready && $(kubectl_ get pods -n "$ds_ns" -l app.kubernetes.io/name=mesh-cni-node \
			-o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == *True* ]]; then
			ready=$now
			echo "ready $now"
		fi
		if [[ -z $lifted ]] && ! node_tainted; then
			lifted=$now
			echo "lifted $now"
		fi
		sleep 0.1
	done
}
observe_lift >"$WORK/taint-times" &
observer=$!
restored_at=$(date +%s.%N)
ds_home
check "DaemonSet rolled back onto the node" kubectl_ rollout status -n "$ds_ns" "ds/$ds_name" --timeout=120s
if wait_for "taint lifted" 60 bash -c "! $K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get node $NODE_NAME -o jsonpath='{.spec.taints[*].key}' | grep -q $TAINT_KEY"; then
	ok "the agent lifted $TAINT_KEY once the node was ready"
else
	bad "the agent lifted $TAINT_KEY (taints: $(node_taints | tr '\n' ' '))"
fi
ds_pod=$(ds_pods | head -1)
ds_pod=${ds_pod#pod/}
lift=$(kubectl_ logs -n "$ds_ns" "$ds_pod" -c install-cni 2>/dev/null | jq -cR 'fromjson? | select(.msg | startswith("readiness taint removed"))' | tail -1)
echo "agent: $lift"
quiet() { "$@" >/dev/null; }
check "the agent logged the lift (node, taint, reason)" quiet jq -e --arg n "$NODE_NAME" '.node == $n and .taint == "mesh-cni.io/not-ready" and (.reason | test("STATUS passed"))' <<<"${lift:-null}"
ev=$(kubectl_ get events -n default --field-selector "involvedObject.kind=Node,involvedObject.name=$NODE_NAME,reason=ReadinessTaintRemoved" -o jsonpath='{.items[-1:].type} {.items[-1:].message}' 2>/dev/null)
echo "Node Event: $ev"
check "Normal ReadinessTaintRemoved Event on node $NODE_NAME" grep -q "^Normal .*$TAINT_KEY" <<<"$ev"
# Timing: the agent's own lift time (its log, ns) against the DaemonSet
# pod's container start and Ready condition (the API's, 1 s resolution)
# and against Ready as first observed by polling (~0.3 s resolution).
wait "$observer" 2>/dev/null
ready_at=$(kubectl_ get pod -n "$ds_ns" "$ds_pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastTransitionTime}')
started_at=$(kubectl_ get pod -n "$ds_ns" "$ds_pod" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')
lift_at=$(jq -r '.time // empty' <<<"${lift:-null}")
seen_ready=$(awk '$1 == "ready" {print $2}' "$WORK/taint-times")
if [[ -n $ready_at && -n $lift_at && -n $started_at && -n $seen_ready ]]; then
	awk -v r="$(date -d "$ready_at" +%s.%N)" -v s="$(date -d "$started_at" +%s.%N)" -v l="$(date -d "$lift_at" +%s.%N)" \
		-v o="$seen_ready" -v d="$restored_at" -v since="$(jq -r '.sinceStartSeconds' <<<"$lift")" 'BEGIN {
		printf "TIMING: DaemonSet restored -> taint lifted %.2fs; agent start -> lifted %.3fs (its log); container start -> lifted %.2fs (start at 1 s resolution)\n", l - d, since, l - s
		printf "TIMING: DaemonSet pod Ready -> taint lifted: %+.2fs against Ready first observed, %+.2fs against the Ready condition (1 s resolution); negative: lifted before the kubelet reported Ready\n", l - o, l - r }'
else
	echo "TIMING: not measured (ready_at=$ready_at started_at=$started_at lift_at=$lift_at seen_ready=$seen_ready)"
fi
ds_ip=$(kubectl_ get pod -n "$ds_ns" "$ds_pod" -o jsonpath='{.status.podIP}')
metrics=$(curl -sf "http://$ds_ip:15290/metrics" 2>/dev/null)
check "/metrics: mesh_cni_agent_readiness_taint_removed_total 1" grep -q '^mesh_cni_agent_readiness_taint_removed_total 1$' <<<"$metrics"
check "/metrics: mesh_cni_agent_node_ready 1" grep -q '^mesh_cni_agent_node_ready 1$' <<<"$metrics"
if wait_ready default pod/e2e-taint-pending; then
	check "the pod that waited for the taint starts redirected (ISTIO chains in its netns)" has_istio_chains "$(pod_pid default e2e-taint-pending)"
else
	bad "e2e-taint-pending Ready after the lift"
fi

step "readiness taint: the node policy refuses everything else, with the DaemonSet pod's own token"
# A token as the kubelet projects it into the DaemonSet pod: the mesh-cni
# service account, bound to the pod, so the API server names the node.
tok=$(kubectl_ create token mesh-cni -n "$ds_ns" --bound-object-kind Pod --bound-object-name "$ds_pod" --duration 10m 2>/dev/null)
kt() { "$K8S_BIN_DIR/kubectl" --kubeconfig /dev/null --server "$(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.server}')" \
	--certificate-authority "$(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')" --token "$tok" "$@"; }
who=$(kt auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.extra.authentication\.kubernetes\.io/node-name}' 2>&1)
echo "token of $ds_pod: $who"
check "the pod-bound token is the DaemonSet's service account on node $NODE_NAME" test "$who" = "system:serviceaccount:$ds_ns:mesh-cni [\"$NODE_NAME\"]" -o "$who" = "system:serviceaccount:$ds_ns:mesh-cni $NODE_NAME"
check "it may read its node (nodes get)" quiet kt get node "$NODE_NAME" -o name
refused() { # desc want cmd...: refused by the policy, naming what
	local desc=$1 want=$2 out
	shift 2
	# by what the API server said: kubectl cordon exits 0 after a refusal
	out=$("$@" 2>&1)
	echo "$desc: $out"
	if [[ $out == *"ValidatingAdmissionPolicy 'mesh-cni-node-taint'"* && $out == *"$want"* ]]; then ok "$desc: refused by mesh-cni-node-taint ($want)"
	else bad "$desc: refused by mesh-cni-node-taint naming '$want'; got: $out"; fi
}
refused "label change of its own node" "labels of node $NODE_NAME" kt label node "$NODE_NAME" e2e-evil=1
refused "taint added to its own node" "refused a change of the taints of node $NODE_NAME" kt taint node "$NODE_NAME" e2e-evil=1:NoSchedule
refused "the readiness taint added back" "refused a change of the taints" kt taint node "$NODE_NAME" "$TAINT_KEY=true:NoSchedule"
refused "cordon of its own node" "spec.unschedulable" kt cordon "$NODE_NAME"
# (not the resourceVersion: the kubelet writes the node's status)
node_clean() {
	[[ -z $(kubectl_ get node "$NODE_NAME" -o jsonpath='{.metadata.labels.e2e-evil}{.spec.unschedulable}') ]] &&
		! node_taints | grep -qE "^(e2e-evil|$TAINT_KEY)="
}
check "the node is unchanged by the refused requests (no label, no taint, not cordoned)" node_clean

# whatever failed above: leave the node schedulable and the DaemonSet home
kubectl_ taint node "$NODE_NAME" "$TAINT_KEY-" >/dev/null 2>&1
ds_home
kubectl_ delete pod -n default e2e-taint-pending --wait=false >/dev/null 2>&1
true
