# Node agent checks (issue 7), sourced by e2e.sh after Bookinfo is up.
# shellcheck shell=bash
# Uses: ok/bad/check/step, kubectl_, ds_ns, ds_name, PP, STATE, test_pod.

step "node agent: Bookinfo's ADDs cost the API server no pod GET"
# The plug-in's kubeconfig carries its own service account (PLUGIN_SERVICE_ACCOUNT),
# the agent the DaemonSet's; the agent's watch is a list/watch, so any "get"
# on a pod by either identity before this point came from a plug-in ADD that
# fell back to the API.
sa_user="system:serviceaccount:$ds_ns:$(kubectl_ get ds -n "$ds_ns" "$ds_name" -o jsonpath='{.spec.template.spec.serviceAccountName}')"
plugin_user="system:serviceaccount:$ds_ns:$(kubectl_ get ds -n "$ds_ns" "$ds_name" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="PLUGIN_SERVICE_ACCOUNT")].value}')"
if [[ -s $STATE/audit.log ]]; then
	gets=$(jq -c --arg u "$sa_user" --arg p "$plugin_user" 'select(.stage == "ResponseComplete" and .verb == "get" and .objectRef.resource == "pods"
		and .objectRef.subresource == null and (.user.username == $u or .user.username == $p))' "$STATE/audit.log" | wc -l)
	watches=$(jq -c --arg u "$sa_user" 'select(.verb == "watch" and .objectRef.resource == "pods" and .user.username == $u)' \
		"$STATE/audit.log" | wc -l)
	if ((gets == 0)); then ok "the API server's audit log holds no pod GET from $plugin_user or $sa_user during the Bookinfo ADDs"
	else
		bad "the API server's audit log holds $gets pod GET(s) from $plugin_user or $sa_user during the Bookinfo ADDs:"
		jq -c --arg u "$sa_user" --arg p "$plugin_user" 'select(.verb == "get" and .objectRef.resource == "pods" and (.user.username == $u or .user.username == $p))
			| [.objectRef.namespace, .objectRef.name, .userAgent]' "$STATE/audit.log" | head
	fi
	if ((watches > 0)); then ok "the agent watches pods ($watches watch requests recorded)"
	else bad "the audit log shows no pod watch from $sa_user"; fi
else
	bad "no audit log at $STATE/audit.log (test/cluster/up.sh enables it)"
fi

step "node agent: kubectl logs shows productpage's ADD decision"
ds_pod=$(kubectl_ get pods -n "$ds_ns" -o name | grep "$ds_name" | head -1)
line=$(kubectl_ logs -n "$ds_ns" "$ds_pod" -c install-cni 2>/dev/null |
	jq -cR --arg p "default/$PP" 'fromjson? | select(.msg == "decision" and .pod == $p and .verb == "ADD")' 2>/dev/null | tail -1)
echo "kubectl logs -n $ds_ns $ds_pod: $line"
check "kubectl logs of $ds_pod shows productpage's ADD: decision redirected, with a reason, served from the cache" \
	jq -e '.decision == "redirected" and (.reason | length > 0) and .podSource == "cache" and (.containerID | length > 0)' <<<"${line:-null}"

step "node agent: a pod with a bad annotation gets a Warning Event naming it"
bad_anno=traffic.sidecar.istio.io/excludeOutboundIPRanges
test_pod default e2e-bad-annotation yes "{$bad_anno: \"not-a-cidr\"}"
ev_msg() {
	kubectl_ get events -n default --field-selector involvedObject.name=e2e-bad-annotation,reason=BadAnnotation \
		-o jsonpath='{.items[0].type} {.items[0].message}' 2>/dev/null
}
ev_found() { [[ -n $(ev_msg) ]]; }
if wait_for "BadAnnotation event" 60 ev_found; then
	msg=$(ev_msg)
	echo "event: $msg"
	if [[ $msg == Warning* && $msg == *"$bad_anno"* ]]; then ok "Warning BadAnnotation Event on e2e-bad-annotation names $bad_anno"
	else bad "BadAnnotation event is a Warning naming $bad_anno: $msg"; fi
else
	bad "no BadAnnotation Event on e2e-bad-annotation"
fi
kubectl_ delete pod -n default e2e-bad-annotation --wait=false >/dev/null 2>&1

step "node agent: /metrics shows the ADDs"
ds_ip=$(kubectl_ get -n "$ds_ns" "$ds_pod" -o jsonpath='{.status.podIP}')
metrics=$(curl -sf "http://$ds_ip:15290/metrics" 2>/dev/null)
adds=$(awk '/^mesh_cni_plugin_verbs_total\{.*decision="redirected".*verb="ADD"/ {s += $2} END {print s + 0}' <<<"$metrics")
echo "redirected ADDs on /metrics: $adds"
if ((adds >= 4)); then ok "/metrics counts the Bookinfo ADDs (mesh_cni_plugin_verbs_total redirected ADD = $adds)"
else bad "/metrics counts at least 4 redirected ADDs (got $adds)"; fi
check "/metrics: pods served from the agent's cache" grep -qE '^mesh_cni_plugin_pod_source_total\{source="cache"\} [1-9]' <<<"$metrics"
check "/metrics: the pod cache has synced" grep -q '^mesh_cni_agent_cache_synced 1' <<<"$metrics"
