#!/usr/bin/env bash
# Pack files (static binaries) into a single-layer OCI image layout tar that
# `ctr images import` understands, without a registry or a Docker engine.
#
#   oci-pack.sh --name localhost/mesh-cni/pause:e2e --out pause.tar \
#       [--entrypoint '["/pause"]'] [--cmd '["x"]'] [--user 1337:1337] \
#       [--env K=V]... [--workdir /] [--symlink LINK:TARGET]... SRC:DEST [SRC:DEST...]
#
# The layer is an uncompressed, reproducible tar (sorted, uid/gid 0, mtime 0).
# index.json carries the `io.containerd.image.name` annotation with the full
# reference, which is the name ctr gives the imported image.
set -euo pipefail

name='' out='' entrypoint=null cmd=null user='' workdir=/
envs=()
files=()
links=()
while (($#)); do
	case $1 in
	--name) name=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--entrypoint) entrypoint=$2; shift 2 ;;
	--cmd) cmd=$2; shift 2 ;;
	--user) user=$2; shift 2 ;;
	--env) envs+=("$2"); shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--symlink) links+=("$2"); shift 2 ;;
	-*) echo "oci-pack: unknown flag $1" >&2; exit 2 ;;
	*) files+=("$1"); shift ;;
	esac
done
[[ -n $name && -n $out && ${#files[@]} -gt 0 ]] || { echo "oci-pack: need --name, --out and SRC:DEST" >&2; exit 2; }
command -v jq >/dev/null || { echo "oci-pack: jq is required" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs lay=$tmp/layout
mkdir -p "$root" "$lay/blobs/sha256"

for f in "${files[@]}"; do
	src=${f%%:*} dest=${f#*:}
	[[ -f $src ]] || { echo "oci-pack: $src not found" >&2; exit 1; }
	install -D -m 0755 "$src" "$root/${dest#/}"
done
for l in ${links[@]+"${links[@]}"}; do
	link=${l%%:*} target=${l#*:}
	mkdir -p "$root/$(dirname "${link#/}")"
	ln -sfn "$target" "$root/${link#/}"
done
# directories most programs expect
mkdir -p "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"

# blob FILE -> prints sha256 hex, moves FILE into blobs/
blob() {
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	mv "$1" "$lay/blobs/sha256/$d"
	echo "$d"
}
size() { stat -c %s "$lay/blobs/sha256/$1"; }

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	-C "$root" -cf "$tmp/layer.tar" .
layer=$(blob "$tmp/layer.tar")

env_json=$(printf '%s\n' "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "${envs[@]}" | jq -R . | jq -s .)
jq -n --argjson ep "$entrypoint" --argjson cmd "$cmd" --arg user "$user" --arg wd "$workdir" \
	--argjson env "$env_json" --arg diff "sha256:$layer" '{
	architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
	config: ({Env: $env, WorkingDir: $wd}
		+ (if $ep == null then {} else {Entrypoint: $ep} end)
		+ (if $cmd == null then {} else {Cmd: $cmd} end)
		+ (if $user == "" then {} else {User: $user} end)),
	rootfs: {type: "layers", diff_ids: [$diff]},
	history: [{created: "1970-01-01T00:00:00Z", created_by: "test/cluster/oci-pack.sh"}]
}' >"$tmp/config.json"
config=$(blob "$tmp/config.json")

jq -n --arg c "sha256:$config" --argjson cs "$(size "$config")" \
	--arg l "sha256:$layer" --argjson ls "$(size "$layer")" '{
	schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
	config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
	layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]
}' >"$tmp/manifest.json"
manifest=$(blob "$tmp/manifest.json")

tag=${name##*:}
[[ $tag == "$name" || $tag == */* ]] && tag=latest
jq -n --arg m "sha256:$manifest" --argjson ms "$(size "$manifest")" --arg name "$name" --arg tag "$tag" '{
	schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
	manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
		platform: {architecture: "amd64", os: "linux"},
		annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}}]
}' >"$lay/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$lay" -cf "$out" oci-layout index.json blobs
echo "$out"
