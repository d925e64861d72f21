#!/usr/bin/env bash
# Bring up a one-node Kubernetes v1.37.2 on this machine, on loopback:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet; primary CNI = Debian bridge + host-local. Idempotent: if the cluster
# is already up and healthy it only prints the hint. On failure it tears down
# what it started (down.sh). Needs root.
#
# Env: MESH_CNI_CLUSTER_DIR (state, default /var/lib/mesh-cni-cluster),
#      MESH_CNI_CACHE (binaries, default /var/cache/mesh-cni),
#      CLUSTER_KEEP_ON_FAILURE=1 (do not tear down when up.sh fails).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "must run as root"
T0=$SECONDS

# wait_up DAEMON TIMEOUT CMD...: poll CMD, give up at once if DAEMON exited
wait_up() {
	local d=$1 t=$2 i
	shift 2
	for ((i = 0; i < t; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		if ! pid_alive "$(daemon_pid "$d")"; then
			log "$d exited; last lines of $LOGS/$d.log:"
			tail -n 20 "$LOGS/$d.log" >&2
			return 1
		fi
		sleep 1
	done
	log "timed out after ${t}s waiting for $d ($*)"
	return 1
}
node_ready() {
	[[ $(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

healthy() {
	[[ -f $STATE/up.ok ]] || return 1
	local d
	for d in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do
		pid_alive "$(daemon_pid $d)" || return 1
	done
	node_ready
}

hint() {
	cat "$STATE/hint"
}

if healthy; then
	log "cluster already up"
	hint
	exit 0
fi
if [[ -d $STATE ]]; then
	log "found state from an earlier run in $STATE: tearing it down first"
	"$CLUSTER_DIR/down.sh"
fi

# ---------------------------------------------------------------- packages
install_packages() {
	local need=() p
	declare -A bin=([etcd-server]=etcd [containerd]=containerd [runc]=runc [iptables]=iptables
		[containernetworking-plugins]=/usr/lib/cni/bridge [jq]=jq [openssl]=openssl [iproute2]=ip
		[conntrack]=conntrack [util-linux]=nsenter [procps]=sysctl [curl]=curl)
	for p in "${!bin[@]}"; do
		if [[ ${bin[$p]} == /* ]]; then [[ -x ${bin[$p]} ]] || need+=("$p")
		else command -v "${bin[$p]}" >/dev/null || need+=("$p"); fi
	done
	((${#need[@]})) || return 0
	log "installing Debian packages: ${need[*]}"
	# never let a package's maintainer script start its service (etcd, containerd)
	local prc=/usr/sbin/policy-rc.d made_prc=0
	if [[ ! -e $prc ]]; then printf '#!/bin/sh\nexit 101\n' >"$prc" && chmod +x "$prc" && made_prc=1; fi
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	((made_prc)) && rm -f "$prc"
	return 0
}
install_packages

# containerd uses the lexically first network config in the conf dir: a
# foreign one there would silently become the cluster's primary CNI
foreign=$(find "$CNI_CONF_DIR" -maxdepth 1 -type f \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) \
	! -name "$(basename "$PRIMARY_CONFLIST")" 2>/dev/null || true)
[[ -z $foreign ]] || die "$CNI_CONF_DIR already holds network configs (${foreign//$'\n'/ }); move them away first"

# ---------------------------------------------------------------- binaries
"$CLUSTER_DIR/build-k8s.sh" >/dev/null

# From here on, a failure tears down what was started.
on_exit() {
	local rc=$?
	set +e
	if ((rc != 0)); then
		log "up.sh failed (rc=$rc); last lines of the logs:"
		local f
		for f in "$LOGS"/*.log; do
			[[ -f $f ]] || continue
			echo "----- $f (last errors)" >&2
			grep -E '^(E[0-9]{4}|F[0-9]{4})|level=(error|fatal)|"level":"(error|fatal)"|[Ee]rror' "$f" | tail -n 8 >&2
		done
		if [[ ${CLUSTER_KEEP_ON_FAILURE:-0} == 1 ]]; then
			log "CLUSTER_KEEP_ON_FAILURE=1: leaving it as it is; run test/cluster/down.sh"
		else
			"$CLUSTER_DIR/down.sh" || true
		fi
	fi
	exit "$rc"
}
trap on_exit EXIT

mkdir -p "$STATE" "$BASELINE" "$LOGS" "$PIDS" "$PKI" "$STATE/run"
chmod 700 "$STATE"

# ---------------------------------------------------------------- baseline
log "recording the host baseline in $BASELINE"
for k in "${WATCHED_SYSCTLS[@]}"; do
	p=$(sysctl_path "$k")
	[[ -f $p ]] && printf '%s=%s\n' "$k" "$(cat "$p")"
done >"$BASELINE/sysctl.watched"
sysctl_snapshot >"$BASELINE/sysctl.all"
for p in "${WATCHED_PATHS[@]}"; do [[ -e $p ]] && echo "$p"; done >"$BASELINE/paths.existing"
ip netns list 2>/dev/null | awk '{print $1}' | sort >"$BASELINE/netns"
ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort >"$BASELINE/links"
for t in iptables ip6tables; do
	for tbl in filter nat mangle raw; do
		"$t-save" -t "$tbl" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
	done >"$BASELINE/$t.rules"
	"$t-save" 2>/dev/null | awk '/^:/{print $1}' | sort -u >"$BASELINE/$t.chains" || true
done
for h in /sys/fs/cgroup/*/; do
	[[ -d $h ]] && find "$h" -mindepth 1 -maxdepth 1 -type d
done 2>/dev/null | sort >"$BASELINE/cgroups"
for f in "$CNI_CONF_DIR"/* "$CNI_BIN_DIR"/*; do [[ -e $f ]] && echo "$f"; done >"$BASELINE/cni-files" 2>/dev/null || true
nft list tables 2>/dev/null | sort >"$BASELINE/nft.tables" || true

# ---------------------------------------------------------------- PKI
log "generating CA, serving/client certificates and the service-account key"
(
	cd "$PKI"
	umask 077
	openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
	openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=mesh-cni-e2e-ca" -out ca.crt 2>/dev/null
	# name subject sans ext
	cert() {
		openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
		openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
		{
			echo "basicConstraints=CA:FALSE"
			echo "keyUsage=critical,digitalSignature,keyEncipherment"
			echo "extendedKeyUsage=$4"
			[[ -n $3 ]] && echo "subjectAltName=$3"
		} >"$1.ext"
		openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
			-extfile "$1.ext" -out "$1.crt" 2>/dev/null
		rm -f "$1.csr" "$1.ext"
	}
	cert apiserver "/CN=kube-apiserver" \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$POD_GATEWAY" serverAuth
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" clientAuth
	cert admin "/O=system:masters/CN=mesh-cni-e2e-admin" "" clientAuth
	cert controller-manager "/CN=system:kube-controller-manager" "" clientAuth
	cert scheduler "/CN=system:kube-scheduler" "" clientAuth
	cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "" clientAuth
	cert kubelet "/CN=$NODE_NAME" "IP:127.0.0.1,DNS:localhost" serverAuth
	cert front-proxy-client "/CN=front-proxy-client" "" clientAuth
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

kubeconfig() { # file user cert
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mesh-cni-e2e
  cluster:
    certificate-authority: $PKI/ca.crt
    server: https://127.0.0.1:$APISERVER_PORT
users:
- name: $2
  user:
    client-certificate: $PKI/$3.crt
    client-key: $PKI/$3.key
contexts:
- name: mesh-cni-e2e
  context: {cluster: mesh-cni-e2e, user: $2}
current-context: mesh-cni-e2e
EOF
	chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_ADMIN" admin admin
kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager controller-manager
kubeconfig "$STATE/scheduler.kubeconfig" scheduler scheduler
kubeconfig "$STATE/kubelet.kubeconfig" kubelet kubelet-client

# ---------------------------------------------------------------- etcd
start_daemon etcd etcd --name mesh-cni-e2e --data-dir "$STATE/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "mesh-cni-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
	--quota-backend-bytes 2147483648
wait_up etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# ---------------------------------------------------------------- apiserver
# Audit: every pod and event request at Metadata level (who, verb, user
# agent), so e2e checks what the API server saw rather than our own logs.
cat >"$STATE/audit-policy.yaml" <<'EOF_AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{group: "", resources: [pods, events]}]
- level: None
EOF_AUDIT
start_daemon kube-apiserver kube-apiserver \
	--audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$STATE/audit.log" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
	--cert-dir "$STATE/apiserver" \
	--endpoint-reconciler-type none \
	--authorization-mode Node,RBAC \
	--client-ca-file "$PKI/ca.crt" \
	--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
	--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
	--requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
	--requestheader-extra-headers-prefix X-Remote-Extra- \
	--proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
	--allow-privileged=true \
	--enable-admission-plugins NodeRestriction \
	--profiling=false
wait_up kube-apiserver 90 kubectl_ get --raw /readyz
log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"

# ---------------------------------------------------------------- controller-manager, scheduler
start_daemon kube-controller-manager kube-controller-manager \
	--kubeconfig "$STATE/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
	--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
	--leader-elect=false --use-service-account-credentials=true \
	--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
	--flex-volume-plugin-dir "$STATE/kcm-flexvolume" \
	--profiling=false
start_daemon kube-scheduler kube-scheduler \
	--kubeconfig "$STATE/scheduler.kubeconfig" \
	--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
	--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false

# ---------------------------------------------------------------- service DNAT for hostNetwork pods
iptables -t nat -N "$SVC_CHAIN"
iptables -t nat -A "$SVC_CHAIN" -d "$KUBERNETES_SVC_IP/32" -p tcp --dport 443 \
	-j DNAT --to-destination "127.0.0.1:$APISERVER_PORT"
iptables -t nat -I OUTPUT -m comment --comment "mesh-cni e2e cluster: kubernetes service" -j "$SVC_CHAIN"
# Pods (the node agent) reach the API server at the bridge's address:
# DNAT to loopback needs route_localnet (recorded and restored by down.sh).
iptables -t nat -A "$SVC_CHAIN" -d "$POD_GATEWAY/32" -p tcp --dport 443 \
	-j DNAT --to-destination "127.0.0.1:$APISERVER_PORT"
iptables -t nat -I PREROUTING -i "$CNI_BRIDGE" -m comment --comment "mesh-cni e2e cluster: API server for pods" -j "$SVC_CHAIN"
sysctl -qw net.ipv4.conf.all.route_localnet=1

# ---------------------------------------------------------------- CNI
log "primary CNI: Debian bridge + host-local in $PRIMARY_CONFLIST"
mkdir -p "$CNI_CONF_DIR" "$CNI_BIN_DIR" "$STATE/cni-ipam"
for p in "${DEBIAN_CNI_PLUGINS[@]}"; do
	if [[ ! -e $CNI_BIN_DIR/$p ]]; then
		ln -s "$DEBIAN_CNI_DIR/$p" "$CNI_BIN_DIR/$p"
		echo "$CNI_BIN_DIR/$p" >>"$STATE/cni-links"
	fi
done
# No default route in pods and no masquerade: pods reach each other and the host
# over the bridge, and nothing else.
cat >"$PRIMARY_CONFLIST" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni-ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# ---------------------------------------------------------------- containerd
mkdir -p "$STATE/containerd"
cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    # containerd 1.6 takes one directory: Debian's plug-ins (from
    # $DEBIAN_CNI_DIR) are linked into it, the installer copies mesh-cni there.
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF
start_daemon containerd containerd --config "$STATE/containerd/config.toml"
cat >"$STATE/crictl.yaml" <<EOF
runtime-endpoint: unix://$CONTAINERD_SOCK
image-endpoint: unix://$CONTAINERD_SOCK
timeout: 30
EOF
wait_up containerd 30 ctr --address "$CONTAINERD_SOCK" version

# ---------------------------------------------------------------- images
"$CLUSTER_DIR/images.sh" pause

# ---------------------------------------------------------------- kubelet
mkdir -p "$STATE/kubelet" "$STATE/kubelet-plugins" "$STATE/pod-logs"
cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
podLogsDir: $STATE/pod-logs
volumePluginDir: $STATE/kubelet-plugins
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
maxPods: 50
EOF
start_daemon kubelet kubelet \
	--config "$STATE/kubelet-config.yaml" \
	--kubeconfig "$STATE/kubelet.kubeconfig" \
	--root-dir "$STATE/kubelet" \
	--cert-dir "$STATE/kubelet/pki" \
	--hostname-override "$NODE_NAME" \
	--v 1
log "waiting for node $NODE_NAME to be Ready"
wait_up kubelet 60 kubectl_ get node "$NODE_NAME"
wait_up kubelet 120 node_ready
wait_for "default service account" 60 kubectl_ get serviceaccount default -n default

cat >"$STATE/env" <<EOF
export KUBECONFIG=$KUBECONFIG_ADMIN
export PATH=$K8S_BIN_DIR:\$PATH
export CRI_CONFIG_FILE=$STATE/crictl.yaml
export CONTAINERD_ADDRESS=$CONTAINERD_SOCK CONTAINERD_NAMESPACE=k8s.io
EOF
echo "cluster is up: run '. $STATE/env' for kubectl/crictl; 'make cluster-down' (test/cluster/down.sh) removes it" >"$STATE/hint"
date +%s >"$STATE/up.ok"
log "node $NODE_NAME Ready; cluster up in $((SECONDS - T0))s"
trap - EXIT
hint
