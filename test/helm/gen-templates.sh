#!/usr/bin/env bash
# Generate the chart's ValidatingAdmissionPolicy templates from deploy/: the
# policies are long CEL that must be the same on both install paths, so the
# chart does not keep a hand copy. Each deploy/ file is rendered by kubectl
# kustomize alone (canonical YAML: no folded scalars, which YAML parsers read
# differently), the agent's user name is tied to the release namespace and
# Helm's labels are added. test/helm TestNoDrift checks the result; run this
# after changing deploy/vap-*.yaml:
#   test/helm/gen-templates.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../cluster/versions.sh
. "$ROOT/test/cluster/versions.sh"
KUBECTL=${KUBECTL:-$K8S_BIN_DIR/kubectl}
TPL=$ROOT/deploy/helm/mesh-cni/templates
# MESH_CNI_DEPLOY_DIR: another deploy/ (a branch before it is merged)
DEPLOY=${MESH_CNI_DEPLOY_DIR:-$ROOT/deploy}
USER_NAME=system:serviceaccount:mesh-cni-system:mesh-cni

# gen SRC DST CONDITION WHY
gen() {
	local src=$DEPLOY/$1 dst=$TPL/$2 cond=$3 why=$4 tmp
	[[ -f $src ]] || { echo "gen-templates: $src missing, $dst left as it is" >&2; return 0; }
	tmp=$(mktemp -d)
	cp "$src" "$tmp/policy.yaml"
	printf 'resources: [policy.yaml]\n' >"$tmp/kustomization.yaml"
	{
		printf '{{- /*\nGENERATED from deploy/%s by test/helm/gen-templates.sh: edit that\nfile, then run the script (TestNoDrift compares both).\n%s\n*/ -}}\n' "$1" "$why"
		[[ -z $cond ]] || printf '{{- if %s }}\n' "$cond"
		"$KUBECTL" kustomize "$tmp" |
			sed "s|$USER_NAME'|{{ include \"mesh-cni.agentUser\" . }}'|g" |
			awk '{print} /^metadata:$/ {md=1; next} md && /^  name: / {print "  labels:"; print "    {{- include \"mesh-cni.labels\" . | nindent 4 }}"} {md=0}'
		[[ -z $cond ]] || printf '{{- end }}\n'
	} >"$dst.tmp"
	rm -rf "$tmp"
	grep -q "$USER_NAME" "$dst.tmp" && { echo "gen-templates: $1 names $USER_NAME where it cannot be templated" >&2; rm -f "$dst.tmp"; exit 1; }
	mv "$dst.tmp" "$dst"
	echo "gen-templates: $2 from deploy/$1" >&2
}

gen vap-node-taint.yaml vap-node-taint.yaml '.Values.taint.enabled' \
	'Only with taint.enabled: without the readiness taint the agent has no Node rights to guard.'
gen vap-repair.yaml vap-repair.yaml '' \
	'Rendered in every repair mode, as deploy/ keeps it with every component.'
