# In-place repair (issue 9, REPAIR_MODE=repair), sourced by e2e.sh with the
# DaemonSet uninstalled: a meshed pod started meanwhile runs without rules;
# installing deploy/ with the repair-inplace component makes the node agent
# program the running pod's netns as ADD would, without a restart.
# shellcheck shell=bash
# Uses: ok/bad/check/step, kubectl_, wait_for, test_pod, pod_pid, pod_ip,
# nat_rules, has_istio_chains, ds_ns, ds_name, DEPLOY, WORK, STANDIN.

step "in-place repair: a meshed pod started while mesh-cni was not installed"
test_pod default e2e-inplace yes
test_pod default e2e-inplace-peer no
ip_ready=1
for p in e2e-inplace e2e-inplace-peer; do wait_ready default "pod/$p" || { bad "$p Ready"; ip_ready=0; }; done
if ((ip_ready)); then
	IP_UID=$(kubectl_ get pod -n default e2e-inplace -o jsonpath='{.metadata.uid}')
	IP_PID=$(pod_pid default e2e-inplace)
	IP_IP=$(pod_ip default e2e-inplace)
	PEER_IP=$(pod_ip default e2e-inplace-peer)
	if has_istio_chains "$IP_PID"; then bad "e2e-inplace started unmeshed (no ISTIO rules)"; else ok "e2e-inplace started unmeshed (no ISTIO rules)"; fi
	out=$("$STANDIN" dial "$IP_IP:9080" 2>&1)
	check "unmeshed: inbound to e2e-inplace:9080 reaches the app directly ($out)" grep -q "^app " <<<"$out"
	out=$(kubectl_ exec -n default e2e-inplace -c app -- standin dial "$PEER_IP:9080" 2>&1)
	check "unmeshed: e2e-inplace's outbound reaches the peer directly ($out)" grep -q "^app " <<<"$out"

	# A pod the plug-in redirected (its ADD record says so) whose rules were
	# flushed since: in this mode the agent reads the netns and repairs it.
	FL_POD=$(pod_of default app=details)
	FL_PID=$(pod_pid default "$FL_POD")
	for s in iptables-nft iptables-legacy; do
		nsenter -t "$FL_PID" -n "$s" -t nat -F 2>/dev/null
		nsenter -t "$FL_PID" -n "$s" -t nat -X 2>/dev/null
	done
	if has_istio_chains "$FL_PID"; then bad "$FL_POD's rules flushed (its ADD record still says redirected)"
	else ok "$FL_POD's rules flushed (its ADD record still says redirected)"; fi

	step "in-place repair: install deploy/ with components/repair-inplace"
	mkdir -p "$WORK/repair-inplace"
	rel=$(realpath --relative-to="$WORK/repair-inplace" "$DEPLOY")
	cat >"$WORK/repair-inplace/kustomization.yaml" <<-EOF2
	apiVersion: kustomize.config.k8s.io/v1beta1
	kind: Kustomization
	resources: [$rel]
	components: [$rel/components/repair-inplace]
	patches:
	  # as e2e.sh's "kubectl set env": this cluster's API server for the agent
	  - target: {kind: DaemonSet, name: $ds_name}
	    patch: |
	      - op: add
	        path: /spec/template/spec/containers/0/env/-
	        value: {name: KUBERNETES_SERVICE_HOST, value: "$POD_GATEWAY"}
	      - op: add
	        path: /spec/template/spec/containers/0/env/-
	        value: {name: KUBERNETES_SERVICE_PORT, value: "443"}
	EOF2
	# (a server-side dry run needs the namespace to exist: apply it first, as e2e.sh does)
	kubectl_ kustomize "$WORK/repair-inplace" | kubectl_ create --dry-run=client -o json -f - 2>/dev/null |
		jq -c 'if .kind == "List" then .items[] else . end | select(.kind == "Namespace")' | kubectl_ apply -f - >&2
	check "the real API server accepts deploy/ + components/repair-inplace (dry run)" \
		kubectl_ apply --dry-run=server -k "$WORK/repair-inplace"
	kubectl_ apply -k "$WORK/repair-inplace" >&2
	check "repair-inplace DaemonSet rolled out" kubectl_ rollout status -n "$ds_ns" "ds/$ds_name" --timeout=120s
	t_ready=$SECONDS
	if wait_for "e2e-inplace's netns holds ISTIO rules" 60 has_istio_chains "$IP_PID"; then
		ok "the running pod's netns got the redirect $((SECONDS - t_ready)) s after the DaemonSet was ready"
		echo "in-place repair: $((SECONDS - t_ready)) s from the rollout's end to the rules seen (1 s polling)"
	else
		bad "the running pod's netns got the redirect within 60 s of the DaemonSet being ready"
		kubectl_ logs -n "$ds_ns" "ds/$ds_name" --tail=30 2>&1
	fi

	check "$FL_POD, redirected by ADD but flushed since, is repaired in place (ISTIO chains back)" \
		wait_for "$FL_POD's netns holds ISTIO rules" 30 has_istio_chains "$FL_PID"
	check "Warning Unmeshed on $FL_POD says its netns lacks the redirect" wait_for "Unmeshed event on $FL_POD" 30 bash -c \
		"$K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get events -n default --field-selector involvedObject.name=$FL_POD,reason=Unmeshed -o jsonpath='{.items[*].message}' | grep -q 'netns lacks the redirect'"

	# what ADD programs for the same pod, now that the plug-in is in the chain
	test_pod default e2e-inplace-twin yes
	if wait_ready default pod/e2e-inplace-twin; then
		nat_rules "$(pod_pid default e2e-inplace-twin)" >"$WORK/inplace-add.rules"
		nat_rules "$IP_PID" >"$WORK/inplace-repaired.rules"
		if [[ -s $WORK/inplace-add.rules ]] && diff "$WORK/inplace-add.rules" "$WORK/inplace-repaired.rules" >"$WORK/inplace.diff"; then
			ok "the repaired netns holds exactly what ADD programmed for the same pod ($(wc -l <"$WORK/inplace-add.rules") rules)"
		else
			bad "the repaired netns differs from ADD's rules for the same pod:"
			cat "$WORK/inplace.diff"
		fi
	else
		bad "e2e-inplace-twin Ready"
	fi
	check "e2e-inplace is the same pod (UID $IP_UID)" \
		test "$(kubectl_ get pod -n default e2e-inplace -o jsonpath='{.metadata.uid}')" = "$IP_UID"
	check "e2e-inplace was not restarted (restartCount 0, same sidecar PID $IP_PID)" bash -c \
		"[[ \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pod -n default e2e-inplace -o jsonpath='{range .status.containerStatuses[*]}{.restartCount}{\"\\n\"}{end}' | sort -u) == 0 && -d /proc/$IP_PID ]]"
	out=$("$STANDIN" dial "$IP_IP:9080" 2>&1)
	check "repaired: inbound to e2e-inplace:9080 lands on its sidecar's 15006 ($out)" grep -q "port=15006 orig=$IP_IP:9080" <<<"$out"
	out=$(kubectl_ exec -n default e2e-inplace -c app -- standin dial "$PEER_IP:9080" 2>&1)
	check "repaired: e2e-inplace's outbound lands on its sidecar's 15001 ($out)" grep -q "port=15001 orig=$PEER_IP:9080" <<<"$out"
	ev() {
		kubectl_ get events -n default --field-selector "involvedObject.name=e2e-inplace,reason=$1" \
			-o jsonpath='{.items[0].type} {.items[0].message}' 2>/dev/null
	}
	if wait_for "UnmeshedPodRepaired event" 30 bash -c "[[ -n \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get events -n default --field-selector involvedObject.name=e2e-inplace,reason=UnmeshedPodRepaired -o name) ]]"; then
		ok "Event UnmeshedPodRepaired on e2e-inplace: $(ev UnmeshedPodRepaired)"
	else
		bad "Event UnmeshedPodRepaired on e2e-inplace"
	fi
	rec=$(cat "/var/run/mesh-cni/sandboxes/inplace-$IP_UID.json" 2>/dev/null)
	check "the agent recorded the pod as redirected (sandboxes/inplace-$IP_UID.json)" \
		jq -e --arg u "$IP_UID" '.uid == $u and .decision == "redirected"' <<<"${rec:-null}"
	# the record's time against the agent's start and readiness (API times are whole seconds)
	ag=$(kubectl_ get pods -n "$ds_ns" -o json | jq -c --arg n "$ds_name" '.items[] | select(.metadata.name | startswith($n))' | head -1)
	t_rec=$(jq -r '.time // empty' <<<"${rec:-null}")
	t_start=$(jq -r '.status.containerStatuses[0].state.running.startedAt // empty' <<<"$ag")
	t_rdy=$(jq -r '.status.conditions[] | select(.type == "Ready") | .lastTransitionTime' <<<"$ag")
	if [[ -n $t_rec && -n $t_start && -n $t_rdy ]]; then
		ms() { echo $(($(date -d "$1" +%s%3N) - $(date -d "$2" +%s%3N))); }
		echo "in-place repair: recorded $(ms "$t_rec" "$t_start") ms after the agent container started, $(ms "$t_rec" "$t_rdy") ms after its pod became Ready (negative: before)"
	fi

	step "in-place repair: the agent has exactly the capabilities the component grants, and no pod delete/patch"
	ds_pod=$(kubectl_ get pods -n "$ds_ns" -o name | grep "$ds_name" | head -1)
	agent_pid=$(crictl_ inspect "$(kubectl_ get -n "$ds_ns" "$ds_pod" -o jsonpath='{.status.containerStatuses[0].containerID}' | sed 's#containerd://##')" | jq -r '.info.pid')
	caps=$(capsh --decode="$(awk '/^CapEff/{print $2}' "/proc/$agent_pid/status")" | cut -d= -f2)
	check "the agent's effective capabilities are cap_net_admin,cap_net_raw,cap_sys_admin,cap_sys_ptrace ($caps)" \
		test "$caps" = "cap_net_admin,cap_net_raw,cap_sys_ptrace,cap_sys_admin"
	sa="system:serviceaccount:$ds_ns:mesh-cni"
	for verb in delete patch; do
		if kubectl_ auth can-i "$verb" pods -n default --as="$sa" >/dev/null 2>&1; then bad "the agent cannot $verb pods in repair mode"
		else ok "the agent cannot $verb pods in repair mode"; fi
	done

	step "in-place repair: uninstall"
	kubectl_ delete -k "$WORK/repair-inplace" --wait=true --timeout=120s >&2
	wait_for "installer pods gone" 120 bash -c "[[ -z \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $ds_ns -o name 2>/dev/null | grep $ds_name) ]]"
	check "repair-inplace uninstalled: mesh-cni entry removed from the conflist" wait_for "entry gone" 60 bash -c "! grep -qs '\"mesh-cni\"' $CNI_CONF_DIR/*.conflist"
	check "repair-inplace uninstalled: binary removed" wait_for "binary gone" 60 test ! -e "$CNI_BIN_DIR/mesh-cni"
fi
kubectl_ delete pod -n default e2e-inplace e2e-inplace-peer e2e-inplace-twin --wait=false >/dev/null 2>&1
true
