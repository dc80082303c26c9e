#!/usr/bin/env bash
# build.sh builds the images from the repository's Dockerfiles with buildah
# (no daemon) and writes each as an OCI archive that `kind load
# image-archive`, `minikube image load`, `ctr images import` and `podman
# load` take:
#   trackrouter.tar   the product: ./Dockerfile (the three binaries and HAProxy)
#   echo.tar          the examples' app (examples/echo/Dockerfile), tagged
#                     with every version in ECHO_TAGS; ECHO_BAD_TAGS are the
#                     same app with ECHO_FAIL_PERCENT=2 set (a bad build),
#                     ECHO_SLOW_TAGS with ECHO_DELAY=30ms (a slow one)
#   pause.tar         the real node's sandbox image (hack/node/pause)
#
# Usage: hack/image/build.sh [OUT_DIR]   (default dist/images)
# Environment:
#   IMAGE       the product's name:tag (default: the one examples/install names)
#   IMAGE_ALSO  more names for the same image, in the same archive
#   BASES       local (default): debian:bookworm-slim assembled by debootstrap
#               from Debian's archive and golang:1.26-bookworm as that plus this
#               machine's Go, for machines that reach no container registry;
#               pull: buildah pulls them from the registry as usual.
#   ECHO_TAGS, ECHO_BAD_TAGS, ECHO_SLOW_TAGS   space-separated tags of the echo image.
# buildah's storage and the bases are cached in
# ${XDG_CACHE_HOME:-~/.cache}/trackrouter/image, keyed by the Debian suite and
# the Go version; the Go module and build caches of this machine are mounted
# into the build, so a second build compiles only what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/dist/images}
suite=bookworm
gover=$(go env GOVERSION)
cache=${TRACKROUTER_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trackrouter/image}
IMAGE=${IMAGE:-$(sed -n 's/^ *image: *\(ghcr.io\/trackrouter\/trackrouter:[^ ]*\).*/\1/p' "$root/examples/install/track-controller.yaml" | head -n1)}
ECHO_TAGS=${ECHO_TAGS:-1.0.0 1.0 0.2.3}
ECHO_BAD_TAGS=${ECHO_BAD_TAGS:-}
ECHO_SLOW_TAGS=${ECHO_SLOW_TAGS:-}
BASES=${BASES:-local}

need() { command -v "$1" >/dev/null 2>&1 || { echo "hack/image/build.sh: $1 is not installed: $2" >&2; exit 1; }; }
need buildah "apt-get install -y buildah (Debian, Ubuntu)"
[ -n "$IMAGE" ] || { echo "hack/image/build.sh: no image name: set IMAGE=NAME:TAG" >&2; exit 1; }
for t in $IMAGE ${IMAGE_ALSO:-}; do
  case "${t##*/}" in
    *:?*) ;;
    *) echo "hack/image/build.sh: image $t has no tag: want NAME:TAG (a tag is required: every HAProxy pod must run the controller's build)" >&2; exit 1 ;;
  esac
done
installed=$(sed -n 's/^ *image: *\(ghcr.io\/trackrouter\/trackrouter:[^ ]*\).*/\1/p' "$root/examples/install/track-controller.yaml" | head -n1)
if [ "$IMAGE" != "$installed" ]; then
  echo "hack/image/build.sh: note: $IMAGE is not the image examples/install runs ($installed): set it with an images: entry in an overlay" >&2
fi
mkdir -p "$cache" "$out"
b() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver overlay "$@"; }
# Working containers a failed or interrupted run left behind.
b rm --all >/dev/null 2>&1 || true
has() { b inspect --type image "$1" >/dev/null 2>&1; }

if [ "$BASES" = local ]; then
  # debian:bookworm-slim: a minbase debootstrap, as Debian's own slim image is.
  if ! has "docker.io/library/debian:$suite-slim"; then
    need debootstrap "apt-get install -y debootstrap"
    start=$SECONDS
    rootfs="$cache/debootstrap-$suite"
    rm -rf "$rootfs"
    debootstrap --variant=minbase "$suite" "$rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 ||
      { echo "hack/image/build.sh: debootstrap $suite failed; see $cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    c=$(b from scratch)
    b copy "$c" "$rootfs/" / >/dev/null
    b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$c"
    b commit -q "$c" "docker.io/library/debian:$suite-slim" >/dev/null
    b rm "$c" >/dev/null
    rm -rf "$rootfs"
    echo "base debian:$suite-slim assembled in $((SECONDS - start)) s" >&2
  fi
  # golang:1.26-bookworm: that base, ca-certificates and git, and this
  # machine's Go toolchain where the official image has its own. A machine
  # behind a TLS-inspecting proxy trusts it through the certificates in
  # /usr/local/share/ca-certificates: the build base trusts them too (the
  # product's image, FROM debian:bookworm-slim, does not).
  gotag="docker.io/library/golang:$(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')-$suite"
  if ! has "$gotag-$gover"; then
    start=$SECONDS
    c=$(b from "docker.io/library/debian:$suite-slim")
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
      b copy "$c" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/ >/dev/null
    fi
    b run --network host "$c" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates git >/dev/null && update-ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
    b copy "$c" "$(go env GOROOT)" /usr/local/go >/dev/null
    b config --env GOLANG_VERSION="${gover#go}" --env GOPATH=/go --env GOTOOLCHAIN=local \
      --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --workingdir /go "$c"
    b commit -q "$c" "$gotag-$gover" >/dev/null
    b rm "$c" >/dev/null
    echo "base $gotag assembled in $((SECONDS - start)) s" >&2
  fi
  b tag "$gotag-$gover" "$gotag"
fi

# bud builds one image; the machine's Go caches are mounted where the
# golang image keeps them, so nothing is downloaded or compiled twice.
bud() { # bud TAG DOCKERFILE [buildah bud flags...]
  local tag=$1 file=$2 start=$SECONDS; shift 2
  mkdir -p "$(go env GOMODCACHE)" "$(go env GOCACHE)"
  b bud --network host --layers -q -t "$tag" -f "$file" \
    -v "$(go env GOMODCACHE):/go/pkg/mod" -v "$(go env GOCACHE):/root/.cache/go-build" \
    "$@" "$root" >/dev/null
  echo "built $tag in $((SECONDS - start)) s" >&2
}
# archive writes images to one OCI archive, each under its full name
# (org.opencontainers.image.ref.name), which containerd's import keeps.
archive() { # archive FILE NAME...
  local file=$1 dir t; shift
  dir=$(mktemp -d)
  for t in "$@"; do b push -q "$t" "oci:$dir:$t" >/dev/null; done
  tar -C "$dir" -cf "$file.tmp" .
  rm -rf "$dir"
  mv "$file.tmp" "$file"
}

# The modules, on this machine first: the build then finds them in the
# mounted cache.
(cd "$root" && go mod download)
bud "$IMAGE" "$root/Dockerfile"
also=()
for t in ${IMAGE_ALSO:-}; do b tag "$IMAGE" "$t"; also+=("$t"); done
archive "$out/trackrouter.tar" "$IMAGE" "${also[@]}"
echo_tags=()
bud trackrouter.local/echo:build "$root/examples/echo/Dockerfile"
for t in $ECHO_TAGS; do b tag trackrouter.local/echo:build "trackrouter.local/echo:$t"; echo_tags+=("trackrouter.local/echo:$t"); done
# The same build with an environment variable in its config: a bad build
# (ECHO_FAIL_PERCENT), a slow one (ECHO_DELAY). A --build-arg would do, but
# buildah's layer cache ignored it: the "bad" image failed nothing.
variant() {
  local name=$1 env=$2 tags=$3 c t
  [ -n "$tags" ] || return 0
  c=$(b from trackrouter.local/echo:build)
  b config --env "$env" "$c"
  b commit -q "$c" "trackrouter.local/echo:$name" >/dev/null
  b rm "$c" >/dev/null
  for t in $tags; do b tag "trackrouter.local/echo:$name" "trackrouter.local/echo:$t"; echo_tags+=("trackrouter.local/echo:$t"); done
}
variant bad ECHO_FAIL_PERCENT=2 "$ECHO_BAD_TAGS"
variant slow ECHO_DELAY=30ms "$ECHO_SLOW_TAGS"
archive "$out/echo.tar" "${echo_tags[@]}"
bud trackrouter.local/pause:1 "$root/hack/node/pause/Dockerfile"
archive "$out/pause.tar" trackrouter.local/pause:1
echo "$out"
