#!/usr/bin/env bash
# Build the cluster's images from static Go binaries and import them into
# containerd's k8s.io namespace (no registry, no Docker engine).
#
#   images.sh pause         localhost/mesh-cni/pause:e2e        (sandbox image)
#   images.sh standin       localhost/mesh-cni/app:e2e          standin app --listen :9080
#                           localhost/mesh-cni/istio-proxy:e2e  standin proxy --ports 15001,15006 (UID/GID 1337);
#                                                               also istio-validation (args: validate) and
#                                                               istio-init (args: validate --want none)
#   images.sh install-cni   localhost/mesh-cni/install-cni:e2e  from deploy/Dockerfile + bin/ (make build)
#   images.sh all
#
# The stand-in is test/standin (docs/contract.md).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=$STATE/images
mkdir -p "$OUT"

gobuild() { # out pkg
	(cd "$REPO_ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$1" "$2")
}

import() { # tar name
	ctr_ images import "$1" >/dev/null
	local have
	have=$(ctr_ images ls -q)
	grep -qxF "$2" <<<"$have" || die "image $2 not found after import"
	log "imported $2"
}

pack_import() { # name tar oci-pack-args...
	local name=$1 tar=$2
	shift 2
	"$CLUSTER_DIR/oci-pack.sh" --name "$name" --out "$tar" "$@" >/dev/null
	import "$tar" "$name"
}

img_pause() {
	gobuild "$OUT/pause" ./test/cluster/images/pause
	pack_import "$PAUSE_IMAGE" "$OUT/pause.tar" --entrypoint '["/pause"]' "$OUT/pause:/pause"
}

img_standin() {
	gobuild "$OUT/standin" ./test/standin
	pack_import "localhost/mesh-cni/app:$IMAGE_TAG" "$OUT/app.tar" \
		--entrypoint '["/usr/local/bin/standin"]' --cmd '["app","--listen",":9080"]' \
		"$OUT/standin:/usr/local/bin/standin"
	pack_import "localhost/mesh-cni/istio-proxy:$IMAGE_TAG" "$OUT/istio-proxy.tar" \
		--entrypoint '["/usr/local/bin/standin"]' --cmd '["proxy","--ports","15001,15006"]' \
		--user 1337:1337 "$OUT/standin:/usr/local/bin/standin"
}

# host_iptables adds to args what deploy/Dockerfile's iptables stage puts in
# /out, taken from this (Debian 12) host: xtables-{legacy,nft}-multi and the
# names mesh-cni runs them by, ip, every shared library they and the xtables
# modules load (with the loader), the modules, a files-only nsswitch.conf.
host_iptables() {
	local mods f lib t b v
	mods=$(echo /usr/lib/*-linux-gnu/xtables)
	[[ -x /usr/sbin/xtables-nft-multi && -x /usr/sbin/xtables-legacy-multi && -d $mods ]] ||
		die "the host lacks iptables (legacy and nft): make deps"
	args+=(/usr/sbin/xtables-legacy-multi:/usr/sbin/xtables-legacy-multi
		/usr/sbin/xtables-nft-multi:/usr/sbin/xtables-nft-multi "$(readlink -f "$(command -v ip)"):/usr/sbin/ip")
	for t in iptables ip6tables; do for b in legacy nft; do for v in save restore; do
		args+=(--symlink "/usr/sbin/$t-$b-$v:xtables-$b-multi")
	done; done; done
	while read -r lib; do args+=("$lib:$lib"); done < <(
		for f in /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-nft-multi "$(command -v ip)" "$mods"/*.so; do
			ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
		done | sort -u)
	for f in "$mods"/*.so; do args+=("$f:$f"); done
	printf 'passwd: files\ngroup: files\n' >"$OUT/nsswitch.conf"
	args+=("$OUT/nsswitch.conf:/etc/nsswitch.conf")
}

# The install-cni image, assembled by hand from deploy/Dockerfile: the final
# stage's COPY lines are mapped onto the binaries `make build` put in bin/ (by
# file name), and its ENTRYPOINT/CMD/USER/ENV/WORKDIR are carried over.
img_install_cni() {
	local df=$REPO_ROOT/deploy/Dockerfile
	[[ -f $df ]] || die "$df not found (issue 3)"
	local b
	for b in install-cni mesh-cni; do
		[[ -x $REPO_ROOT/bin/$b ]] || die "bin/$b missing: run 'make build' first"
	done
	local args=() line kw rest src dest ep='' cmd=''
	# keep only the last stage
	local stage
	stage=$(awk 'toupper($1)=="FROM"{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$df" |
		sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
	while IFS= read -r line; do
		line=${line%%$'\r'}
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		kw=$(awk '{print toupper($1)}' <<<"$line")
		rest=$(sed -E 's/^[[:space:]]*[A-Za-z]+[[:space:]]+//' <<<"$line")
		case $kw in
		FROM)
			[[ $rest =~ ^(scratch|gcr.io/distroless/static|gcr.io/distroless/base) ]] ||
				log "note: deploy/Dockerfile's base '$rest' is replaced by an empty image"
			;;
		COPY | ADD)
			if [[ $rest == *--from=iptables* ]]; then
				host_iptables
				continue
			fi
			# drop flags (--from=..., --chmod=...)
			rest=$(sed -E 's/(--[a-z]+=[^ ]+[[:space:]]+)*//' <<<"$rest")
			read -r -a parts <<<"$rest"
			dest=${parts[-1]}
			for src in "${parts[@]:0:${#parts[@]}-1}"; do
				b=$(basename "$src")
				[[ -f $REPO_ROOT/bin/$b ]] || die "Dockerfile copies '$src': no bin/$b to map it to"
				if [[ $dest == */ ]]; then args+=("$REPO_ROOT/bin/$b:$dest$b"); else args+=("$REPO_ROOT/bin/$b:$dest"); fi
			done
			;;
		ENTRYPOINT) ep=$rest ;;
		CMD) cmd=$rest ;;
		USER) args+=(--user "$rest") ;;
		WORKDIR) args+=(--workdir "$rest") ;;
		ENV)
			if [[ $rest == *=* ]]; then
				read -r -a parts <<<"$rest"
				for kv in "${parts[@]}"; do args+=(--env "${kv//\"/}"); done
			else
				args+=(--env "$(awk '{print $1}' <<<"$rest")=$(cut -d' ' -f2- <<<"$rest")")
			fi
			;;
		LABEL | ARG | EXPOSE | VOLUME | STOPSIGNAL | HEALTHCHECK | SHELL) ;;
		RUN) die "deploy/Dockerfile's final stage has RUN; cannot assemble it without a build engine" ;;
		*) log "note: Dockerfile instruction $kw ignored" ;;
		esac
	done <<<"$stage"
	json_form() { if [[ $1 == \[* ]]; then echo "$1"; else jq -cn --arg s "$1" '["/bin/sh","-c",$s]'; fi; }
	[[ -n $ep ]] && args+=(--entrypoint "$(json_form "$ep")")
	[[ -n $cmd ]] && args+=(--cmd "$(json_form "$cmd")")
	pack_import "localhost/mesh-cni/install-cni:$IMAGE_TAG" "$OUT/install-cni.tar" "${args[@]}"
}

case ${1:-all} in
pause) img_pause ;;
standin) img_standin ;;
install-cni) img_install_cni ;;
all) img_pause; img_standin; img_install_cni ;;
*) die "usage: images.sh pause|standin|install-cni|all" ;;
esac
