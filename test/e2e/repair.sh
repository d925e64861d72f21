# Issue 9: unmeshed pods and the repair modes on the real cluster. Sourced by
# e2e.sh after its uninstall block (mesh-cni is not installed).
# shellcheck shell=bash
# Uses: ok/bad/check/step, kubectl_, wait_for, wait_ready, has_istio_chains,
# pod_pid, ds_ns, ds_name, DEPLOY, WORK, POD_GATEWAY, APP_IMAGE, PROXY_IMAGE.

# repair_overlay DIR [COMPONENT]: a kustomization in $WORK/DIR of deploy/
# (plus the component, e.g. repair-off), with the API address this cluster
# needs (see e2e.sh's `kubectl set env`) set in the DaemonSet directly, so
# it rolls out once. Prints the directory.
repair_overlay() {
	local dir=$WORK/$1 rel
	mkdir -p "$dir"
	rel=$(realpath --relative-to="$dir" "$DEPLOY")
	{
		echo "apiVersion: kustomize.config.k8s.io/v1beta1"
		echo "kind: Kustomization"
		echo "resources: [$rel]"
		[[ -n ${2:-} ]] && echo "components: [$rel/components/$2]"
		echo "patches:"
		echo "  - target: {kind: DaemonSet, name: $ds_name}"
		echo "    patch: |-"
		echo "      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_HOST, value: \"$POD_GATEWAY\"}}"
		echo "      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_PORT, value: \"443\"}}"
	} >"$dir/kustomization.yaml"
	echo "$dir"
}

# repair_workloads SUFFIX: a Deployment (1 replica) and a Job
# (restartPolicy Never) with the stand-in sidecar, as e2e's other meshed pods.
repair_workloads() {
	local s=$1 kind
	for kind in deploy job; do
		{
			if [[ $kind == deploy ]]; then
				printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e2e-repair-deploy%s, namespace: default}\n' "$s"
				printf 'spec:\n  replicas: 1\n  selector: {matchLabels: {app: e2e-repair-deploy%s}}\n' "$s"
			else
				printf 'apiVersion: batch/v1\nkind: Job\nmetadata: {name: e2e-repair-job%s, namespace: default}\n' "$s"
				printf 'spec:\n  backoffLimit: 3\n'
			fi
			printf '  template:\n    metadata: {labels: {app: e2e-repair-%s%s}, annotations: {e2e/keep: "x"}}\n' "$kind" "$s"
			printf '    spec:\n      terminationGracePeriodSeconds: 1\n'
			[[ $kind == job ]] && printf '      restartPolicy: Never\n'
			printf '      containers:\n'
			# the Job's app fails when killed, as a batch job killed mid-work
			# does (one that exits 0 on SIGTERM completes the Job: docs/repair.md)
			if [[ $kind == job ]]; then
				printf '      - {name: app, image: %s, args: [app, --term-exit-code, "143"], securityContext: {runAsUser: 1000}}\n' "$APP_IMAGE"
			else
				printf '      - {name: app, image: %s, securityContext: {runAsUser: 1000}}\n' "$APP_IMAGE"
			fi
			printf '      - {name: istio-proxy, image: %s, securityContext: {runAsUser: 1337, runAsGroup: 1337}}\n' "$PROXY_IMAGE"
		} | kubectl_ apply -f - >/dev/null
	done
}

# the pods of app=NAME that are not being deleted
live_pods() { kubectl_ get pod -n default -l "app=$1" -o json | jq -r '.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name'; }
has_live_pod() { [[ -n $(live_pods "$1") ]]; }
pod_uid() { kubectl_ get pod -n default "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
running_unmeshed() { # pod: Ready and no ISTIO rules
	wait_ready default "pod/$1" && ! has_istio_chains "$(pod_pid default "$1")"
}
pod_event() { # pod reason: the Event's type and message, from the API server
	kubectl_ get events -n default --field-selector "involvedObject.name=$1,reason=$2" \
		-o jsonpath='{.items[0].type} {.items[0].message}' 2>/dev/null
}
has_event() { [[ -n $(pod_event "$1" "$2") ]]; }
repair_metrics() {
	local p ip
	p=$(kubectl_ get pods -n "$ds_ns" -o name | grep "$ds_name" | head -1)
	ip=$(kubectl_ get -n "$ds_ns" "$p" -o jsonpath='{.status.podIP}')
	curl -sf "http://$ip:15290/metrics" 2>/dev/null
}
metric_is() { [[ $(repair_metrics | awk -v m="$1" '$1 == m {print $2}') == "$2" ]]; }
ds_rolled() { kubectl_ rollout status -n "$ds_ns" "ds/$ds_name" --timeout=120s >/dev/null; }
no_ds_pods() { [[ -z $(kubectl_ get pods -n "$ds_ns" -o name 2>/dev/null | grep "$ds_name") ]]; }
no_entry() { ! grep -qs '"mesh-cni"' "$CNI_CONF_DIR"/*.conflist; }
uninstall_overlay() { # dir
	kubectl_ delete -k "$1" --wait=true --timeout=120s >/dev/null 2>&1
	wait_for "installer pods gone" 120 no_ds_pods && wait_for "mesh-cni entry gone" 60 no_entry
}
# pod_state POD: what "untouched" compares: UID, labels, annotations, spec
pod_state() { kubectl_ get pod -n default "$1" -o json | jq -cS '[.metadata.uid, .metadata.labels, .metadata.annotations, .spec]'; }
sans_label() { jq -cS '.[1] |= del(.["mesh-cni.io/unmeshed"])' <<<"$1"; }
labelled() { [[ $(kubectl_ get pod -n default "$1" -o jsonpath='{.metadata.labels.mesh-cni\.io/unmeshed}') == true ]]; }
deleted() { # pod uid: gone, replaced, or being deleted
	local got
	got=$(kubectl_ get pod -n default "$1" -o jsonpath='{.metadata.uid}/{.metadata.deletionTimestamp}' 2>/dev/null)
	[[ -z $got || ${got%%/*} != "$2" || -n ${got#*/} ]]
}
new_pod() { # app old-uid: a live pod of app with another UID
	local p
	for p in $(live_pods "$1"); do [[ $(pod_uid "$p") != "$2" ]] && { echo "$p"; return 0; }; done
	return 1
}

step "repair: pods started while mesh-cni is not installed run unmeshed"
repair_workloads ""
wait_for "the Deployment's pod" 60 has_live_pod e2e-repair-deploy
wait_for "the Job's pod" 60 has_live_pod e2e-repair-job
RD=$(live_pods e2e-repair-deploy | head -1)
RJ=$(live_pods e2e-repair-job | head -1)
for p in "$RD" "$RJ"; do
	check "$p runs with no ISTIO rules (started before mesh-cni)" running_unmeshed "$p"
done
RD_STATE=$(pod_state "$RD") RJ_STATE=$(pod_state "$RJ")

step "repair: install with REPAIR_MODE=off (components/repair-off)"
OFF=$(repair_overlay repair-off repair-off)
kubectl_ apply -k "$OFF" >&2
check "DaemonSet rolled out (repair-off)" ds_rolled
sa=system:serviceaccount:$ds_ns:mesh-cni
if kubectl_ auth can-i delete pods -n default --as="$sa" >/dev/null 2>&1 || kubectl_ auth can-i patch pods -n default --as="$sa" >/dev/null 2>&1; then
	bad "repair-off: the agent may neither delete nor patch pods"
else ok "repair-off: the agent may neither delete nor patch pods (RBAC)"; fi
for p in "$RD" "$RJ"; do
	if wait_for "Unmeshed Event on $p" 60 has_event "$p" Unmeshed; then
		msg=$(pod_event "$p" Unmeshed)
		echo "$p: $msg"
		if [[ $msg == Warning* && $msg == *"no ADD record"* && $msg == *"repair mode off"* ]]; then ok "Warning Unmeshed Event on $p says why and that mode off does nothing"
		else bad "Unmeshed Event on $p: $msg"; fi
	else bad "Warning Unmeshed Event on $p"; fi
done
check "/metrics: mesh_cni_agent_unmeshed_pods 2" wait_for "gauge 2" 30 metric_is mesh_cni_agent_unmeshed_pods 2
check "/metrics: mesh_cni_agent_repairs_total{mode=off,result=skipped} 2" \
	metric_is 'mesh_cni_agent_repairs_total{mode="off",result="skipped"}' 2
sleep 2 # let any (wrong) action land
check "repair-off: $RD untouched" test "$(pod_state "$RD")" = "$RD_STATE"
check "repair-off: $RJ untouched" test "$(pod_state "$RJ")" = "$RJ_STATE"
check "repair-off: $RD still runs without ISTIO rules" running_unmeshed "$RD"

step "repair: switch to REPAIR_MODE=label (components/repair-label)"
LABEL=$(repair_overlay repair-label repair-label)
kubectl_ apply -k "$LABEL" >&2
kubectl_ rollout restart -n "$ds_ns" "ds/$ds_name" >&2 # the ConfigMap changed
check "DaemonSet rolled out (repair-label)" ds_rolled
for p in "$RD" "$RJ"; do
	check "$p labelled mesh-cni.io/unmeshed=true" wait_for "$p labelled" 60 labelled "$p"
	check "UnmeshedPodLabeled Event on $p" wait_for "labelled Event on $p" 30 has_event "$p" UnmeshedPodLabeled
done
check "label: $RD same UID, nothing else changed" test "$(sans_label "$(pod_state "$RD")")" = "$RD_STATE"
check "label: $RJ same UID, nothing else changed" test "$(sans_label "$(pod_state "$RJ")")" = "$RJ_STATE"
check "label: $RD still runs (untouched)" running_unmeshed "$RD"
check "/metrics: mesh_cni_agent_repairs_total{mode=label,result=success} 2" \
	wait_for "label metric" 30 metric_is 'mesh_cni_agent_repairs_total{mode="label",result="success"}' 2

step "repair: uninstall, fresh unmeshed pods, install with the default (delete)"
check "uninstalled (repair-label)" uninstall_overlay "$LABEL"
kubectl_ delete deploy,job -n default e2e-repair-deploy e2e-repair-job --wait=false >/dev/null 2>&1
repair_workloads 2
wait_for "the new Deployment's pod" 60 has_live_pod e2e-repair-deploy2
wait_for "the new Job's pod" 60 has_live_pod e2e-repair-job2
RD=$(live_pods e2e-repair-deploy2 | head -1)
RJ=$(live_pods e2e-repair-job2 | head -1)
for p in "$RD" "$RJ"; do
	check "$p runs with no ISTIO rules (started before mesh-cni)" running_unmeshed "$p"
done
RD_UID=$(pod_uid "$RD") RJ_UID=$(pod_uid "$RJ")
DEL=$(repair_overlay repair-delete)
kubectl_ apply -k "$DEL" >&2
check "DaemonSet rolled out (default: delete)" ds_rolled
t_ready=$SECONDS
check "delete: the Deployment's unmeshed pod $RD deleted" wait_for "$RD deleted" 60 deleted "$RD" "$RD_UID"
check "delete: the Job's unmeshed pod $RJ (restartPolicy Never) deleted" wait_for "$RJ deleted" 60 deleted "$RJ" "$RJ_UID"
t_handled=$((SECONDS - t_ready))
for p in "$RD" "$RJ"; do
	check "Warning Unmeshed Event on $p" has_event "$p" Unmeshed
	check "UnmeshedPodDeleted Event on $p" wait_for "deleted Event on $p" 30 has_event "$p" UnmeshedPodDeleted
done
for a in "e2e-repair-deploy2 $RD_UID" "e2e-repair-job2 $RJ_UID"; do
	app=${a% *} old=${a#* }
	if wait_for "a new pod of $app" 90 new_pod "$app" "$old" && np=$(new_pod "$app" "$old") && wait_ready default "pod/$np"; then
		if has_istio_chains "$(pod_pid default "$np")"; then ok "delete: $app recreated ($np, new UID) and redirected"
		else bad "delete: $app's new pod $np is redirected"; fi
	else bad "delete: $app recreated a Ready pod"; fi
done
ds_pod=$(kubectl_ get pods -n "$ds_ns" -o name | grep "$ds_name" | head -1)
handled=$(kubectl_ logs -n "$ds_ns" "$ds_pod" -c install-cni 2>/dev/null |
	jq -cR 'fromjson? | select(.msg == "unmeshed pod handled") | [.pod, .result, .sinceActiveMs]' 2>/dev/null)
echo "repair timing: DaemonSet ready -> both unmeshed pods deleted, seen by polling: ${t_handled}s"
echo "repair timing, the agent's log ([pod, result, ms from the controller becoming active]):"
echo "$handled"
check "the agent logged each handled pod with its time since active" grep -q "$RJ" <<<"$handled"

# The in-place checks (mode repair) are repair_inplace.sh, which e2e.sh
# sources itself, before this file.

step "repair: clean up"
kubectl_ delete deploy,job -n default e2e-repair-deploy e2e-repair-job e2e-repair-deploy2 e2e-repair-job2 --wait=false >/dev/null 2>&1
check "uninstalled (default overlay)" uninstall_overlay "$DEL"
rm -rf "$OFF" "$LABEL" "$DEL"
true
