# Issue 8: the operators' tools on the real cluster. Sourced by e2e.sh while
# mesh-cni is installed and Bookinfo runs (needs PP, the productpage pod).
# shellcheck shell=bash

step "kubectl mesh-cni (issue 8): inspect from where kubectl runs"
# kubectl finds the plug-in on PATH, as the README says to install it.
kmesh() { PATH="$REPO_ROOT/bin:$K8S_BIN_DIR:$PATH" "$K8S_BIN_DIR/kubectl" mesh-cni "$@" --kubeconfig "$KUBECONFIG_ADMIN"; }
# seed_rows FILE: the seed's commented listing as "CHAIN num target prot in out source destination extra"
seed_rows() { sed -n 's/^# //p' "$1" | awk '$1=="Chain"{c=$2; next} c!="" && $1 ~ /^[0-9]+$/ {$1=$1; print c, $0} /^\*nat/{exit}'; }
# listing_rows: an iptables -L -v --line-numbers listing, counters and opt dropped, our chains only
listing_rows() { awk '$1=="Chain"{c=$2; next} c!="" && $1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {o=c " " $1 " " $4 " " $5; for (i=7;i<=NF;i++) o=o " " $i; print o}'; }

out=$(kmesh inspect "$PP" -n default); rc=$?
echo "$out" | head -8
check "kubectl mesh-cni inspect productpage exits 0 (got $rc) and says OK" \
	bash -c '[[ $0 == 0 ]] && grep -q "default/$1: OK" <<<"$2"' "$rc" "$PP" "$out"
seed_rows "$SHARED/spec/seed-nat-rules.txt" >"$WORK/seed-rows" 2>/dev/null || true
if [[ -s $WORK/seed-rows ]]; then
	listing_rows <<<"$out" | grep -E '^(PREROUTING|OUTPUT|ISTIO_[A-Z_]+) ' >"$WORK/inspect-rows"
	if diff <(sort "$WORK/seed-rows") <(sort "$WORK/inspect-rows") >"$WORK/inspect-rows.diff"; then
		ok "kubectl mesh-cni inspect productpage prints the seed's table ($(wc -l <"$WORK/seed-rows") rows)"
	else
		bad "kubectl mesh-cni inspect productpage prints the seed's table:"; cat "$WORK/inspect-rows.diff"
	fi
else
	bad "the seed's table (shared/spec/seed-nat-rules.txt) is readable"
fi

# A tampered pod: drop the rule that keeps the pod's traffic to itself out of the mesh.
test_pod default e2e-tamper yes
if wait_ready default pod/e2e-tamper; then
	pid=$(pod_pid default e2e-tamper)
	nsenter -t "$pid" -n iptables -t nat -D ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
	out=$(kmesh inspect e2e-tamper -n default); rc=$?
	echo "$out" | sed -n '1,8p'
	if [[ $rc == 1 ]] && grep -q 'missing: -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN' <<<"$out"; then
		ok "a tampered pod: exit 1, DRIFT naming the rule"
	else bad "a tampered pod: exit 1 naming the rule (got exit $rc)"; fi
else
	bad "e2e-tamper Ready"
fi

out=$(kmesh inspect e2e-no-sidecar -n default); rc=$?
echo "$out" | sed -n '1,3p'
if [[ $rc == 3 ]] && grep -q 'NOT-REDIRECTED' <<<"$out" && grep -q 'no istio-proxy container' <<<"$out"; then
	ok "a pod without sidecar: exit 3, NOT-REDIRECTED: no istio-proxy container"
else bad "a pod without sidecar: exit 3 with its reason (got exit $rc)"; fi

out=$(kmesh inspect no-such-pod -n default 2>&1); rc=$?
check "an unknown pod: exit 2 (got $rc)" test "$rc" = 2

node=$(kubectl_ get pod -n default "$PP" -o jsonpath='{.spec.nodeName}')
out=$(kmesh inspect --node "$node" --all); rc=$?
echo "$out"
check "inspect --node --all lists productpage OK and the tampered pod DRIFT (exit 1, got $rc)" \
	bash -c '[[ $0 == 1 ]] && grep -qE "^OK +default/$1 " <<<"$2" && grep -qE "^DRIFT +default/e2e-tamper " <<<"$2"' "$rc" "$PP" "$out"
check "no inspector pod is left behind" \
	wait_for "inspector pods gone" 60 bash -c "[[ -z \$($K8S_BIN_DIR/kubectl --kubeconfig $KUBECONFIG_ADMIN get pods -n $ds_ns -l app.kubernetes.io/name=mesh-cni-inspect -o name) ]]"

out=$(kmesh explain -f "$WORK/bookinfo/bookinfo.yaml"); rc=$?
n=$(grep -c '^verdict: not redirected: pod has no istio-proxy container' <<<"$out")
check "kubectl mesh-cni explain: the seed's bookinfo.yaml as published, 6 workloads not redirected (got $n, exit $rc)" test "$n" = 6 -a "$rc" = 0
kubectl_ delete pod -n default e2e-tamper --wait=false >/dev/null 2>&1
