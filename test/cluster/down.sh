#!/usr/bin/env bash
# Tear down the local cluster and put the host back as up.sh found it:
# pods (CNI DEL through the chain), processes, mounts under the state dir,
# network namespaces, the bridge and veths, iptables chains created meanwhile
# (KUBE-FIREWALL, KUBE-KUBELET-CANARY, CNI-*, our service DNAT), sysctls (the
# values recorded before), cgroups, /var/lib/cni and the other host paths that
# did not exist before, and finally the state dir. Then it checks the host
# against the baseline and exits 1 if something is left.
#
# Env: CLUSTER_KEEP_LOGS=DIR  copy the cluster's logs there before deleting.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "must run as root"
T0=$SECONDS
if [[ ! -d $STATE ]]; then
	log "no cluster state in $STATE: nothing to tear down"
	exit 0
fi
have_baseline=0
[[ -f $BASELINE/sysctl.watched ]] && have_baseline=1

# ---------------------------------------------------------------- pods and processes
stop_daemon kubelet 30
if pid_alive "$(daemon_pid containerd)" && [[ -x $K8S_BIN_DIR/crictl ]]; then
	# removing the sandboxes runs CNI DEL through the chain (releases IPs, veths)
	n=$(crictl_ pods -q 2>/dev/null | wc -l)
	if ((n > 0)); then
		log "removing $n pod sandbox(es) through the CRI"
		timeout 120 "$K8S_BIN_DIR/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 60s rmp -a -f >/dev/null 2>"$LOGS/crictl-rmp.log" ||
			log "crictl rmp did not finish cleanly; cleaning up by hand"
	fi
fi
stop_daemon kube-scheduler &
stop_daemon kube-controller-manager &
stop_daemon containerd 30 &
wait
stop_daemon kube-apiserver 30
stop_daemon etcd 30

# a cluster process: a shim (names our containerd socket) or one of our daemons
# started with a path under the state dir
is_ours() {
	local cmd comm
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
	[[ $cmd == *"$CONTAINERD_SOCK"* ]] && return 0
	comm=$(cat "/proc/$1/comm" 2>/dev/null)
	case $comm in etcd | containerd* | kube-* | kubelet) [[ $cmd == *"$STATE/"* ]] ;; *) return 1 ;; esac
}
# anything still running that belongs to the cluster: shims (their command line
# names our containerd socket) and processes in the kubelet's pod cgroups
ours=()
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	((pid == $$)) && continue
	is_ours "$pid" && ours+=("$pid")
done
while IFS= read -r f; do
	while IFS= read -r pid; do [[ -n $pid ]] && ours+=("$pid"); done <"$f"
done < <(find /sys/fs/cgroup/*/kubepods* -name cgroup.procs 2>/dev/null)
if ((${#ours[@]})); then
	mapfile -t ours < <(printf '%s\n' "${ours[@]}" | sort -un)
	log "killing leftover processes: ${ours[*]}"
	kill -KILL "${ours[@]}" 2>/dev/null || true
	sleep 0.5
fi

# ---------------------------------------------------------------- netns, mounts, links
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
	[[ $ns == cni-* ]] || continue
	grep -qxF "$ns" "$BASELINE/netns" 2>/dev/null && continue
	ip netns delete "$ns" 2>/dev/null || { umount -l "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
done
while IFS= read -r m; do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
done < <(findmnt -rn -o TARGET | awk -v s="$STATE/" 'index($0, s) == 1' | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
	for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
		ip link delete "$l" 2>/dev/null
	done
	ip link delete "$CNI_BRIDGE" && log "deleted bridge $CNI_BRIDGE"
fi

# ---------------------------------------------------------------- iptables
# chains created while the cluster ran: KUBE-* (kubelet), CNI-* (bridge/portmap),
# ours; first the rules in other chains that jump to them, then the chains
clean_iptables() {
	local t=$1 tbl chains c rule
	for tbl in filter nat mangle raw; do
		chains=$("$t-save" -t "$tbl" 2>/dev/null | awk '/^:(KUBE-|CNI-|MESHCNI-E2E)/{print substr($1, 2)}')
		[[ -n $chains ]] || continue
		for c in $chains; do
			grep -qxF ":$c" "$BASELINE/$t.chains" 2>/dev/null && continue
			# delete every rule that jumps to c
			while IFS= read -r rule; do
				eval "$t -t $tbl -D ${rule#-A }" 2>/dev/null || true
			done < <("$t-save" -t "$tbl" | grep -E -- "^-A .* -j $c( |\$)")
		done
		for c in $chains; do
			grep -qxF ":$c" "$BASELINE/$t.chains" 2>/dev/null && continue
			"$t" -t "$tbl" -F "$c" 2>/dev/null
		done
		for c in $chains; do
			grep -qxF ":$c" "$BASELINE/$t.chains" 2>/dev/null && continue
			"$t" -t "$tbl" -X "$c" 2>/dev/null && log "removed $t $tbl chain $c"
		done
	done
}
clean_iptables iptables
clean_iptables ip6tables
# nftables tables that iptables-nft created for the cluster and that are now
# empty (only its base chains, no rules): gone too, as before up.sh
new_empty_nft_tables() {
	command -v nft >/dev/null && [[ -f $BASELINE/nft.tables ]] || return 0
	local fam name
	while read -r _ fam name; do
		grep -qxF "table $fam $name" "$BASELINE/nft.tables" && continue
		# a rule, or a chain without a hook (a user chain), keeps the table
		nft -j list table "$fam" "$name" 2>/dev/null |
			jq -e '[.nftables[] | select(.rule or .set or .map or (.chain and (.chain.hook | not)))] | length == 0' >/dev/null &&
			echo "$fam $name"
	done < <(nft list tables 2>/dev/null)
}
while read -r fam name; do
	[[ -n $fam ]] || continue
	nft delete table "$fam" "$name" && log "removed empty nftables table $fam $name"
done < <(new_empty_nft_tables)

# ---------------------------------------------------------------- sysctls
if ((have_baseline)); then
	while IFS='=' read -r k v; do
		p=$(sysctl_path "$k")
		[[ -f $p ]] || continue
		cur=$(cat "$p")
		if [[ $cur != "$v" ]]; then
			echo "$v" >"$p" && log "restored sysctl $k: $cur -> $v"
		fi
	done <"$BASELINE/sysctl.watched"
fi

# ---------------------------------------------------------------- cgroups
for h in /sys/fs/cgroup/*/; do
	for d in "$h"kubepods* "$h"k8s.io; do
		[[ -d $d ]] || continue
		grep -qxF "${d%/}" "$BASELINE/cgroups" 2>/dev/null && continue
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ -d $d ]] && log "could not remove cgroup $d"
	done
done

# ---------------------------------------------------------------- files
# CNI files that appeared while the cluster ran (ours, the installer's)
for f in "$CNI_CONF_DIR"/* "$CNI_CONF_DIR"/.[!.]* "$CNI_BIN_DIR"/*; do
	[[ -e $f || -L $f ]] || continue
	grep -qxF "$f" "$BASELINE/cni-files" 2>/dev/null && continue
	rm -rf "$f"
done
# host paths that did not exist before up.sh
if ((have_baseline)); then
	for ((i = ${#WATCHED_PATHS[@]} - 1; i >= 0; i--)); do
		p=${WATCHED_PATHS[i]}
		[[ -e $p ]] || continue
		grep -qxF "$p" "$BASELINE/paths.existing" && continue
		findmnt -rn -o TARGET | awk -v s="$p/" 'index($0, s) == 1' | sort -r | xargs -r umount -l 2>/dev/null
		rm -rf "$p" && log "removed $p"
	done
fi

# ---------------------------------------------------------------- verify
fail=0
problem() { log "NOT RESTORED: $*"; fail=1; }
for d in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
	pid_alive "$(daemon_pid $d)" && problem "$d still running"
done
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	((pid == $$)) && continue
	is_ours "$pid" && problem "process $pid: $(tr '\0' ' ' 2>/dev/null <"$d/cmdline")"
done
[[ -n $(findmnt -rn -o TARGET | awk -v s="$STATE/" 'index($0, s) == 1') ]] && problem "mounts left under $STATE"
left=$(comm -13 "$BASELINE/netns" <(ip netns list 2>/dev/null | awk '{print $1}' | sort) | grep '^cni-')
[[ -n $left ]] && problem "netns left: $left"
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && problem "bridge $CNI_BRIDGE left"
for t in iptables ip6tables; do
	left=$(comm -13 "$BASELINE/$t.chains" <("$t-save" 2>/dev/null | awk '/^:/{print $1}' | sort -u) | grep -E '^:(KUBE-|CNI-|MESHCNI-E2E)')
	[[ -n $left ]] && problem "$t chains left: $(echo $left)"
done
left=$(new_empty_nft_tables)
[[ -n $left ]] && problem "empty nftables tables left: $(echo $left)"
if ((have_baseline)); then
	while IFS='=' read -r k v; do
		p=$(sysctl_path "$k")
		[[ -f $p && $(cat "$p") != "$v" ]] && problem "sysctl $k=$(cat "$p"), was $v"
	done <"$BASELINE/sysctl.watched"
	other=$(diff <(grep -v -e "$CNI_BRIDGE" -e '\.veth' "$BASELINE/sysctl.all") <(sysctl_snapshot | grep -v -e "$CNI_BRIDGE" -e '\.veth') | grep '^[<>]')
	[[ -n $other ]] && log "note: other sysctls differ from before (not changed by the cluster?):"$'\n'"$other"
	for p in "${WATCHED_PATHS[@]}"; do
		[[ -e $p ]] && ! grep -qxF "$p" "$BASELINE/paths.existing" && problem "$p left"
	done
	for t in iptables ip6tables; do
		d=$(diff "$BASELINE/$t.rules" <(for tbl in filter nat mangle raw; do "$t-save" -t "$tbl" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; done) | grep '^[<>]')
		[[ -n $d ]] && log "note: $t rules differ from before:"$'\n'"$d"
	done
fi
[[ -d /sys/fs/cgroup/memory/kubepods ]] && ! grep -qx /sys/fs/cgroup/memory/kubepods "$BASELINE/cgroups" && problem "kubepods cgroups left"

if [[ -n ${CLUSTER_KEEP_LOGS:-} ]]; then
	mkdir -p "$CLUSTER_KEEP_LOGS" && cp -r "$LOGS/." "$CLUSTER_KEEP_LOGS/" 2>/dev/null && log "logs copied to $CLUSTER_KEEP_LOGS"
fi
if ((fail == 0)); then
	rm -rf "$STATE"
	log "cluster down, host restored ($((SECONDS - T0))s)"
	exit 0
fi
log "cluster down, but the host is not as it was; state kept in $STATE (rerun down.sh after fixing)"
exit 1
