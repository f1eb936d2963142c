#!/usr/bin/env bash
# Build the images the cluster needs that no registry may provide here, into archives in the cache:
#  - the pause (sandbox) image, compiled from build/pause/linux/pause.c of the k8s.io/kubernetes module;
#  - the base image the project's Dockerfiles start FROM: Debian bookworm with python3, venv and pip.
# Each archive is reused when present; podman's own storage is refilled from the archive when it lacks one.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

mkdir -p "$IMAGE_DIR"

ensure_in_podman() {  # image archive
  podman image exists "$1" || podman load -q -i "$2" >/dev/null
}

build_pause() {
  local archive="$IMAGE_DIR/pause.tar"
  if [[ ! -f "$archive" ]]; then
    [[ -f "$CACHE_DIR/pause.c" ]] || die "pause.c missing: run build-binaries.sh first"
    log "building the pause image"
    local work; work="$(mktemp -d)"
    mkdir -p "$work/rootfs"
    gcc -Os -static -DVERSION=3.10-poet -o "$work/rootfs/pause" "$CACHE_DIR/pause.c"
    strip "$work/rootfs/pause"
    tar -C "$work/rootfs" -c . | podman import -q \
      --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - "$PAUSE_IMAGE" >/dev/null
    podman save -q --format docker-archive -o "$archive.tmp" "$PAUSE_IMAGE"
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
  fi
  ensure_in_podman "$PAUSE_IMAGE" "$archive"
}

build_base() {
  local archive="$IMAGE_DIR/base-python.tar"
  if [[ ! -f "$archive" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
    log "building the base image $BASE_IMAGE with debootstrap (about a minute)"
    local work; work="$(mktemp -d)"
    # The mirror apt already uses on this host: the only package source there is.
    local mirror
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)"
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
      bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" > "$work/debootstrap.log" 2>&1 \
      || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    local r="$work/rootfs"
    # pip reaches the package index through the host's trust store.
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
    # Behave like the python image: pip may install into the system interpreter, tools under /usr/local/bin.
    rm -f "$r"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$r/usr/local/bin/python3"
    ln -sf /usr/bin/python3 "$r/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$r/usr/local/bin/pip3"
    ln -sf /usr/bin/pip3 "$r/usr/local/bin/pip"
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb
    tar -C "$r" --numeric-owner -c . | podman import -q \
      --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    podman save -q --format docker-archive -o "$archive.tmp" "$BASE_IMAGE"
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
  fi
  ensure_in_podman "$BASE_IMAGE" "$archive"
}

start=$(date +%s)
build_pause
build_base
log "base images ready in $IMAGE_DIR ($(( $(date +%s) - start ))s)"
