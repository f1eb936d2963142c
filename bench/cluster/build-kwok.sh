#!/usr/bin/env bash
# Build kwok (sigs.k8s.io/kwok, Kubernetes WithOut Kubelet) from the Go module proxy into the e2e cluster's
# cache, with the node and pod stages it ships (nodes initialised and kept alive with leases, pods made
# Running and Ready at once, deleted pods finalised). The operator benchmark uses it to give the local
# control plane fake nodes that hold hundreds of pods. Reused when present.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../tests/e2e/cluster/common.sh
source "$HERE/../../tests/e2e/cluster/common.sh"

KWOK_VERSION="v0.8.0"
KWOK_DIR="$CACHE_DIR/kwok-$KWOK_VERSION"
if [[ -x "$KWOK_DIR/kwok" && -s "$KWOK_DIR/stages.yaml" ]]; then
  log "kwok $KWOK_VERSION cached in $KWOK_DIR"
  exit 0
fi
mkdir -p "$KWOK_DIR"
log "building kwok $KWOK_VERSION"
start=$(date +%s)
GOFLAGS="-trimpath" GOBIN="$KWOK_DIR" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
{
  for stage in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/$stage"
  done
} > "$KWOK_DIR/stages.yaml.tmp"
mv "$KWOK_DIR/stages.yaml.tmp" "$KWOK_DIR/stages.yaml"
log "kwok ready in $KWOK_DIR ($(( $(date +%s) - start ))s)"
