#!/usr/bin/env bash
# Build the cluster's binaries from Go modules into a versioned cache outside the repository.
# Reused when present: a warm run only checks that each binary exists.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

command -v go >/dev/null || die "go is needed to build the cluster binaries (Go toolchain >= 1.26)"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath"
mkdir -p "$BIN_DIR" "$CNI_BIN_DIR"

build_kubernetes() {
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
  local missing=0 b
  for b in "${wanted[@]}"; do [[ -x "$BIN_DIR/$b" ]] || missing=1; done
  [[ $missing == 0 ]] && { log "kubernetes $K8S_VERSION binaries cached"; return; }
  local src="$CACHE_DIR/src/kubernetes"
  mkdir -p "$src"
  log "building kubernetes $K8S_VERSION (cold: several minutes)"
  # The kubernetes module replaces its staging modules with local directories, which a
  # dependent module does not inherit: map each v0.0.0 staging requirement to its release.
  local modfile
  modfile="$(cd "$src" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$modfile" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  {
    echo "module poet-e2e/kubernetes"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$modfile" \
      | awk -v v="$K8S_STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$src/go.mod"
  local ld="-s -w"
  ld+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  ld="${ld/gitMinor=${K8S_VERSION#v1.}/gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)}"
  local pkgs=()
  for b in "${wanted[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$src" && go build -ldflags "$ld" -o "$src/out/" "${pkgs[@]}")
  for b in "${wanted[@]}"; do install -m 0755 "$src/out/$b" "$BIN_DIR/$b"; done
  # The pause image is built from the same module's source (see build-images.sh).
  local kdir
  kdir="$(cd "$src" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  install -m 0644 "$kdir/build/pause/linux/pause.c" "$CACHE_DIR/pause.c"
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && { log "etcd $ETCD_VERSION cached"; return; }
  local src="$CACHE_DIR/src/etcd"
  mkdir -p "$src"
  log "building etcd $ETCD_VERSION"
  cat > "$src/go.mod" <<MOD
module poet-e2e/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > "$src/main.go" <<'GO'
// Command etcd: the etcd server from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$src" && go build -ldflags "-s -w" -o "$BIN_DIR/etcd" .)
}

build_cni() {
  local wanted=(bridge host-local portmap loopback) missing=0 b
  for b in "${wanted[@]}"; do [[ -x "$CNI_BIN_DIR/$b" ]] || missing=1; done
  [[ $missing == 0 ]] && { log "CNI plugins $CNI_PLUGINS_VERSION cached"; return; }
  log "building CNI plugins $CNI_PLUGINS_VERSION"
  local pkgs=(
    "github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION"
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION"
    "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS_VERSION"
    "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION"
  )
  GOFLAGS="-trimpath" GOBIN="$CNI_BIN_DIR" go install -ldflags "-s -w" "${pkgs[@]}"
}

start=$(date +%s)
build_kubernetes
build_etcd
build_cni
log "binaries ready in $BIN_DIR and $CNI_BIN_DIR ($(( $(date +%s) - start ))s)"
