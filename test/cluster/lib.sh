# Shared settings and helpers for test/cluster/*.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_DIR/../.." && pwd)
# shellcheck source=versions.sh
. "$CLUSTER_DIR/versions.sh"

# Everything the cluster owns lives under STATE (certs, etcd data, containerd
# root/state, kubelet root, logs, pids, the host baseline).
STATE=${MESH_CNI_CLUSTER_DIR:-/var/lib/mesh-cni-cluster}
BASELINE=$STATE/baseline
LOGS=$STATE/logs
PIDS=$STATE/pids
PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
CONTAINERD_SOCK=$STATE/run/containerd.sock

# Loopback only, non-default ports.
ETCD_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
KCM_PORT=20257
SCHED_PORT=20259
KUBELET_PORT=20250
KUBELET_HEALTHZ_PORT=20248
# The node is named after its loopback address: the kubelet then reports
# 127.0.0.1 as its InternalIP, so the API server, probes and hostNetwork pods
# only ever talk over loopback.
NODE_NAME=127.0.0.1
# Service ClusterIPs come from loopback too, so nothing is ever sent to an
# address off this machine. There is no kube-proxy; one DNAT rule in our own
# chain (MESHCNI-E2E-SVC, nat OUTPUT) makes the `kubernetes` service reach the
# API server from the host network namespace, so in-cluster config works for
# hostNetwork pods such as the installer DaemonSet.
SERVICE_CIDR=127.96.0.0/24
KUBERNETES_SVC_IP=127.96.0.1
SVC_CHAIN=MESHCNI-E2E-SVC

# Host CNI locations (the installer DaemonSet writes here too).
CNI_CONF_DIR=/etc/cni/net.d
CNI_BIN_DIR=/opt/cni/bin
DEBIAN_CNI_DIR=/usr/lib/cni
CNI_NET_NAME=meshcni-e2e
CNI_BRIDGE=meshbr0
POD_SUBNET=10.244.0.0/24
# The bridge's address in POD_SUBNET (host-local's default gateway). Pods have
# no default route and no kube-proxy serves them, so up.sh DNATs this
# address's port 443 to the API server: the node agent in the DaemonSet pod
# reaches the API there (test/e2e sets KUBERNETES_SERVICE_HOST to it).
POD_GATEWAY=10.244.0.1
PRIMARY_CONFLIST=$CNI_CONF_DIR/10-meshcni-e2e-bridge.conflist
# Debian plug-ins linked into CNI_BIN_DIR (containerd 1.6 takes one bin_dir).
DEBIAN_CNI_PLUGINS=(bridge host-local loopback portmap)

# Images, all imported into containerd's k8s.io namespace (no registry).
IMAGE_TAG=e2e
PAUSE_IMAGE=localhost/mesh-cni/pause:$IMAGE_TAG

# sysctls the kubelet (and the bridge plug-in) may change; recorded by up.sh,
# restored by down.sh.
WATCHED_SYSCTLS=(
	vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes
	net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	fs.inotify.max_user_watches fs.inotify.max_user_instances
)
# host paths something in the cluster may create; down.sh removes the ones that
# did not exist before up.sh.
WATCHED_PATHS=(
	/etc/cni /etc/cni/net.d /opt/cni /opt/cni/bin /var/lib/cni /run/netns /run/containerd
	/var/log/containers /var/log/pods /var/lib/kubelet /var/run/kubernetes
	/usr/libexec/kubernetes /var/log/mesh-cni.log /opt/containerd /var/lib/containerd
	/var/run/mesh-cni
)

export PATH="$K8S_BIN_DIR:$PATH"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kubectl_() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
crictl_() { "$K8S_BIN_DIR/crictl" --config "$STATE/crictl.yaml" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# start NAME CMD...: run a daemon in its own session, log to $LOGS/NAME.log.
start_daemon() {
	local name=$1
	shift
	mkdir -p "$LOGS" "$PIDS"
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
	log "started $name (pid $!, log $LOGS/$name.log)"
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

daemon_pid() { [[ -f $PIDS/$1.pid ]] && cat "$PIDS/$1.pid"; }

# stop_daemon NAME [timeout]: TERM, wait, then KILL; by recorded pid only.
stop_daemon() {
	local name=$1 t=${2:-20} pid i
	pid=$(daemon_pid "$name") || return 0
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < t * 10; i++)); do pid_alive "$pid" || break; sleep 0.1; done
		if pid_alive "$pid"; then
			log "$name (pid $pid) did not stop in ${t}s: KILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
		log "stopped $name (pid $pid)"
	fi
	rm -f "$PIDS/$name.pid"
}

# wait_for DESC TIMEOUT CMD...: poll CMD every second.
wait_for() {
	local desc=$1 t=$2 i
	shift 2
	for ((i = 0; i < t; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	log "timed out after ${t}s waiting for $desc"
	return 1
}

# sysctl key -> /proc/sys path
sysctl_path() { echo "/proc/sys/${1//.//}"; }

# Filtered `sysctl -a` for before/after comparison: drop counters and other
# values that change on their own.
sysctl_snapshot() {
	sysctl -a 2>/dev/null | grep -Ev '^(fs\.(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota\.)|kernel\.(random\.|ns_last_pid|pty\.nr|sched_domain|tainted|perf_event)|net\.netfilter\.nf_conntrack_count|vm\.(stat_refresh|drop_caches)|dev\.cdrom|fs\.binfmt_misc|user\.)'
}
