#!/usr/bin/env bash
# make fuzz: every Fuzz target in the module, each for FUZZTIME (default 30s),
# one after the other (go test -fuzz takes one target at a time). A finding
# fails the run and leaves its input in the package's testdata/fuzz/ for
# `go test` to replay. FUZZ=regexp narrows the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
filter=${FUZZ:-.}
mapfile -t targets < <(grep -rHoE '^func Fuzz[A-Za-z0-9_]+\(' --include='*_test.go' pkg cmd test |
	sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(#\1 \2#' | sort -u | grep -E "$filter" || true)
[[ ${#targets[@]} -gt 0 ]] || { echo "no fuzz targets match $filter"; exit 1; }
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	echo "== $name ($dir) for $FUZZTIME"
	go test -run '^$' -parallel "${FUZZ_PARALLEL:-1}" -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$dir"
done
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each, no findings"
