#!/usr/bin/env bash
# dist.sh builds the release archives into DIST (default dist/) for each
# PLATFORMS entry (default: linux and darwin, amd64 and arm64), with VERSION
# stamped in every binary:
#   trackrouter_VERSION_OS_ARCH.tar.gz    trackrouter, track-controller, trackctl
#   kubectl-track_VERSION_OS_ARCH.tar.gz  trackctl as the kubectl plugin kubectl-track
# then the krew plugin manifest (DIST/track.yaml, from hack/dist/krew.yaml)
# with each archive's URL and sha256, and DIST/SHA256SUMS.
# Usage: VERSION=v0.2.0 hack/dist/dist.sh
# (DIST_FLAGS, default -trimpath, and CGO_ENABLED, default 0, are the build's;
# the test sets them to the go command's defaults to reuse the build cache.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VERSION=${VERSION:?set VERSION, e.g. VERSION=v0.2.0}
if ! [[ $VERSION =~ ^v(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]]; then
  echo "dist.sh: VERSION $VERSION: want vMAJOR.MINOR.PATCH (krew needs a semantic version)" >&2
  exit 2
fi
tar --version 2>/dev/null | grep -q "GNU tar" || { echo "dist.sh: needs GNU tar (reproducible archives: --sort, --mtime)" >&2; exit 2; }
DIST=${DIST:-$root/dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
URL=${URL:-https://github.com/trackrouter/trackrouter/releases/download/$VERSION}
GO=${GO:-go}
mkdir -p "$DIST"
rm -f "$DIST"/trackrouter_*.tar.gz "$DIST"/kubectl-track_*.tar.gz # SHA256SUMS lists this run's only
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
platforms_yaml=""
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  full="trackrouter_${VERSION}_${os}_${arch}"
  plugin="kubectl-track_${VERSION}_${os}_${arch}"
  mkdir -p "$work/$full" "$work/$plugin"
  # shellcheck disable=SC2086 # DIST_FLAGS is words
  (cd "$root" && CGO_ENABLED=${CGO_ENABLED:-0} GOOS=$os GOARCH=$arch $GO build ${DIST_FLAGS--trimpath} -buildvcs=false \
    -ldflags "-s -X github.com/trackrouter/trackrouter/internal/version.Version=$VERSION" -o "$work/$full/" ./cmd/...)
  cp "$root/README.md" "$work/$full/"
  cp "$work/$full/trackctl" "$work/$plugin/kubectl-track"
  cp "$root/README.md" "$work/$plugin/"
  # Reproducible archives: sorted names, fixed owner and time.
  for a in "$full" "$plugin"; do
    tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=u+rwX,go=rX -cf - "$a" | gzip -n > "$DIST/$a.tar.gz"
  done
  sum=$(sha256sum "$DIST/$plugin.tar.gz" | cut -d' ' -f1)
  platforms_yaml+="  - selector:
      matchLabels: {os: $os, arch: $arch}
    uri: $URL/$plugin.tar.gz
    sha256: $sum
    files:
      - {from: $plugin/kubectl-track, to: .}
      - {from: $plugin/README.md, to: .}
    bin: kubectl-track
"
  echo "dist: $full.tar.gz $plugin.tar.gz" >&2
done
{ sed "s/@VERSION@/$VERSION/" "$here/krew.yaml"; printf '%s' "$platforms_yaml"; } > "$DIST/track.yaml"
(cd "$DIST" && sha256sum ./*.tar.gz | sed 's# \./# #' > SHA256SUMS)
echo "$DIST"
