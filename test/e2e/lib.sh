# Shared by test/e2e/e2e.sh and test/e2e/demo.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034
# shellcheck source=../cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

SHARED=${SHARED_DIR:-$REPO_ROOT/../shared}
SEED=${SEED_DIR:-$SHARED/seeds}/003_5fcaddfb03eac8ae.txt
SEED_RULES=$SHARED/spec/seed-nat-rules.txt
[[ -f $SEED_RULES ]] || SEED_RULES=$REPO_ROOT/pkg/redirect/testdata/seed.v4.rules
DEPLOY=$REPO_ROOT/deploy
APP_IMAGE=localhost/mesh-cni/app:$IMAGE_TAG
PROXY_IMAGE=localhost/mesh-cni/istio-proxy:$IMAGE_TAG
INSTALL_IMAGE=localhost/mesh-cni/install-cni:$IMAGE_TAG
WORK=$STATE/e2e
STANDIN=$STATE/images/standin
# set by e2e_prepare_deploy
ds_ns='' ds_name='' orig_image=''

# preflight: root, seed, deploy/, make build
e2e_preflight() {
	[[ $(id -u) == 0 ]] || die "must run as root"
	[[ -f $SEED ]] || die "seed not found: $SEED (set SEED_DIR)"
	[[ -f $DEPLOY/kustomization.yaml || -f $DEPLOY/kustomization.yml ]] || die "$DEPLOY has no kustomization"
	local b
	for b in install-cni mesh-cni; do
		[[ -x $REPO_ROOT/bin/$b ]] || die "bin/$b missing: run 'make build' first"
	done
}

# images: the stand-ins and install-cni, imported into containerd
e2e_images() {
	"$CLUSTER_DIR/images.sh" standin >&2 || die "stand-in images"
	"$CLUSTER_DIR/images.sh" install-cni >&2 || die "install-cni image"
}

# pod_pid NS POD [CONTAINER]: host PID of a container, the way the seed does it
pod_pid() {
	local cid
	# a native sidecar's status is among the init containers'
	cid=$(kubectl_ get pod -n "$1" "$2" -o jsonpath="{.status.containerStatuses[?(@.name=='${3:-istio-proxy}')].containerID}{.status.initContainerStatuses[?(@.name=='${3:-istio-proxy}')].containerID}")
	cid=${cid#containerd://}
	[[ -n $cid ]] || return 1
	crictl_ inspect "$cid" | jq -r '.info.pid'
}
# nat_rules PID: the pod netns' nat table as iptables-save -A lines (either backend)
nat_rules() {
	local out s
	for s in iptables-nft-save iptables-legacy-save; do
		# iptables-save spells out the implicit protocol match (-p tcp -m tcp)
		out=$(nsenter -t "$1" -n "$s" -t nat 2>/dev/null | grep -E '^-A ' | sed -E 's/-p (tcp|udp) -m (tcp|udp) /-p \1 /') || true
		[[ -n $out ]] && { echo "$out"; return; }
	done
}
has_istio_chains() { [[ $(nat_rules "$1") == *ISTIO_* ]]; }
wait_ready() { # ns selector|pod/name
	if [[ $2 == pod/* ]]; then
		kubectl_ wait -n "$1" --for=condition=Ready "$2" --timeout=120s >/dev/null
	else
		kubectl_ wait -n "$1" --for=condition=Ready pod -l "$2" --timeout=120s >/dev/null
	fi
}
pod_of() { kubectl_ get pod -n "$1" -l "$2" -o jsonpath='{.items[0].metadata.name}'; }
pod_ip() { kubectl_ get pod -n "$1" "$2" -o jsonpath='{.status.podIP}'; }
# a pod with the app and (optionally) the stand-in sidecar
test_pod() { # ns name sidecar(yes|no) [annotation-yaml]
	local sidecar=''
	[[ $3 == yes ]] && sidecar="
  - name: istio-proxy
    image: $PROXY_IMAGE
    securityContext: {runAsUser: 1337, runAsGroup: 1337}"
	kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $2
  namespace: $1
  ${4:+annotations: $4}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: $APP_IMAGE
    securityContext: {runAsUser: 1000}$sidecar
EOF
}
conflist_has_mesh() { cat "$CNI_CONF_DIR"/*.conflist 2>/dev/null | jq -se 'map(.plugins[]?.type) | index("mesh-cni") != null' >/dev/null; }
plugin_kubeconfig() {
	cat "$CNI_CONF_DIR"/*.conflist 2>/dev/null | jq -rs 'map(.plugins[]? | select(.type == "mesh-cni") | .kubeconfig) | first // empty'
}

# Render deploy/ and make its image available. Sets ds_ns, ds_name, orig_image.
# deploy/ is applied as it is: the locally built image is imported under the
# name deploy/ gives it (imagePullPolicy IfNotPresent finds it, no registry).
e2e_prepare_deploy() {
	mkdir -p "$WORK"
	kubectl_ kustomize "$DEPLOY" | kubectl_ create --dry-run=client -o json -f - >"$WORK/deploy.json" 2>/dev/null ||
		die "cannot render deploy/"
	local ds first
	ds=$(jq -c 'if .kind == "List" then .items[] else . end | select(.kind == "DaemonSet")' "$WORK/deploy.json" | head -1)
	ds_ns=$(jq -r '.metadata.namespace // "default"' <<<"$ds")
	ds_name=$(jq -r '.metadata.name // empty' <<<"$ds")
	orig_image=$(jq -r '.spec.template.spec.containers[0].image // empty' <<<"$ds")
	[[ -n $orig_image && -n $ds_name ]] || die "no DaemonSet found in deploy/"
	# the fully qualified reference the CRI resolves it to
	full_image=$orig_image
	first=${orig_image%%/*}
	if [[ $orig_image != */* ]]; then full_image=docker.io/library/$orig_image
	elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then full_image=docker.io/$orig_image; fi
	[[ ${full_image##*/} == *:* || $full_image == *@* ]] || full_image=$full_image:latest
	ctr_ images tag --force "$INSTALL_IMAGE" "$full_image" >/dev/null || die "tagging $full_image"
	log "install-cni image available as $orig_image ($full_image)"
}

# istio-proxy's and istio-validation's securityContext as Istio's injector
# writes it (sidecar template), and its sidecar.istio.io/status annotation
ISTIO_SECURITY_CONTEXT='{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, privileged: false, readOnlyRootFilesystem: true, runAsGroup: 1337, runAsNonRoot: true, runAsUser: 1337}'
ISTIO_STATUS='{"initContainers":["istio-validation","istio-proxy"],"containers":null,"volumes":["istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}'
ISTIO_STATUS_CONTAINERS='{"initContainers":["istio-validation"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}'

# the seed's Bookinfo as a kustomization in $WORK/bookinfo: app images replaced
# by the stand-in app, the stand-in sidecar injected as Istio's injector would
# (minus istio-init: the CNI plug-in replaces it)
e2e_bookinfo_kustomization() {
	mkdir -p "$WORK/bookinfo"
	awk '/^    bookinfo.yaml$/{on=1; next} /^  2\. Deploy the Bookinfo/{on=0} on' "$SEED" | sed 's/^    //' >"$WORK/bookinfo/bookinfo.yaml"
	{
		cat <<-EOF
	apiVersion: kustomize.config.k8s.io/v1beta1
	kind: Kustomization
	namespace: default
	resources: [bookinfo.yaml]
	images:
	EOF
		grep -o 'docker.io/istio/examples-bookinfo-[a-z0-9-]*' "$WORK/bookinfo/bookinfo.yaml" | sort -u | while read -r i; do
			printf -- '- name: %s\n  newName: %s\n  newTag: %s\n' "$i" "${APP_IMAGE%:*}" "$IMAGE_TAG"
		done
		cat <<-EOF
	patches:
	# what Istio's injector writes in CNI mode today (no istio-init: the CNI
	# plug-in replaces it): istio-validation, run as the proxy's UID, proves
	# the redirect before anything else starts; istio-proxy is a native
	# sidecar with Istio's securityContext; the status annotation.
	- target: {kind: Deployment, labelSelector: "app!=details"}
	  patch: |-
	    - op: add
	      path: /spec/template/spec/initContainers
	      value:
	      - name: istio-validation
	        image: $PROXY_IMAGE
	        args: [validate]
	        securityContext: $ISTIO_SECURITY_CONTEXT
	      - name: istio-proxy
	        image: $PROXY_IMAGE
	        args: [proxy, sidecar, --ports, "15001,15006"]
	        restartPolicy: Always
	        securityContext: $ISTIO_SECURITY_CONTEXT
	    - op: add
	      path: /spec/template/metadata/annotations
	      value: {sidecar.istio.io/status: '$ISTIO_STATUS'}
	    - op: add
	      path: /spec/template/spec/terminationGracePeriodSeconds
	      value: 1
	# details keeps the older injection: istio-proxy among the containers
	- target: {kind: Deployment, labelSelector: "app=details"}
	  patch: |-
	    - op: add
	      path: /spec/template/spec/initContainers
	      value:
	      - name: istio-validation
	        image: $PROXY_IMAGE
	        args: [validate]
	        securityContext: $ISTIO_SECURITY_CONTEXT
	    - op: add
	      path: /spec/template/spec/containers/-
	      value:
	        name: istio-proxy
	        image: $PROXY_IMAGE
	        args: [proxy, sidecar, --ports, "15001,15006"]
	        securityContext: $ISTIO_SECURITY_CONTEXT
	    - op: add
	      path: /spec/template/metadata/annotations
	      value: {sidecar.istio.io/status: '$ISTIO_STATUS_CONTAINERS'}
	    - op: add
	      path: /spec/template/spec/terminationGracePeriodSeconds
	      value: 1
	# the seed's cluster excludes 192.168.0.1 from outbound capture
	- target: {kind: Deployment, name: productpage-v1}
	  patch: |-
	    - op: add
	      path: /spec/template/metadata/annotations/traffic.sidecar.istio.io~1excludeOutboundIPRanges
	      value: 192.168.0.1/32
	EOF
	} >"$WORK/bookinfo/kustomization.yaml"
}
