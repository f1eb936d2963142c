#!/usr/bin/env bash
# Build the project's images (poet-monitor/operator and poet-monitor/runtime, tagged with the package
# version) from its Dockerfile(s) with podman, offline (--pull=never: the base image is the local one from
# build-base-images.sh), save them as archives in the cache and, when the local cluster's containerd is
# running, import them into it. Pass --no-import to only build and save.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

IMPORT=1
[[ "${1:-}" == "--no-import" ]] && IMPORT=0

VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)"
[[ -n "$VERSION" ]] || die "no version in $REPO/pyproject.toml"
OUT="$IMAGE_DIR/project"
mkdir -p "$OUT"

"$HERE/build-base-images.sh"

build() {  # name dockerfile context [target]
  local name="$1" dockerfile="$2" context="$3" target="${4:-}"
  local ref="docker.io/poet-monitor/$name:$VERSION"
  log "building $ref from ${dockerfile#"$REPO"/}${target:+ (target $target)}"
  podman build --quiet --pull=never --network=host --layers \
    --build-arg "PYTHON_IMAGE=${BASE_IMAGE}" \
    -f "$dockerfile" ${target:+--target "$target"} -t "$ref" "$context" >/dev/null
  podman save -q --format docker-archive -o "$OUT/$name.tar.tmp" "$ref"
  mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  if (( IMPORT )) && [[ -S "$CONTAINERD_SOCK" ]]; then
    ctr_k8s images import "$OUT/$name.tar" >/dev/null
    log "imported $ref into the local cluster"
  fi
}

T0=$(date +%s)
if [[ -f "$REPO/Dockerfile" ]] && grep -qiE '^FROM .* AS operator' "$REPO/Dockerfile"; then
  build runtime "$REPO/Dockerfile" "$REPO" runtime
  build operator "$REPO/Dockerfile" "$REPO" operator
elif [[ -f "$REPO/operator/Dockerfile" && -f "$REPO/monitor_runtime/Dockerfile" ]]; then
  build runtime "$REPO/monitor_runtime/Dockerfile" "$REPO"
  build operator "$REPO/operator/Dockerfile" "$REPO"
else
  die "no Dockerfile with targets operator and runtime (nor operator/ and monitor_runtime/ Dockerfiles)"
fi
log "project images $VERSION ready in $OUT ($(( $(date +%s) - T0 ))s)"
