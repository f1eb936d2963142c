# Shared settings and helpers for the local e2e cluster scripts (sourced, not run).

K8S_VERSION="v1.37.2"
K8S_STAGING_VERSION="v0.37.2"
ETCD_VERSION="v3.6.16"
CNI_PLUGINS_VERSION="v1.10.0"

POET_CACHE="${POET_CACHE:-$HOME/.cache/poet-monitor}"
CACHE_DIR="$POET_CACHE/k8s-$K8S_VERSION"
BIN_DIR="$CACHE_DIR/bin"
CNI_BIN_DIR="$CACHE_DIR/cni-bin"
IMAGE_DIR="$CACHE_DIR/images"

# One cluster's state: certificates, kubeconfigs, configs, logs, PIDs and the undo journal.
STATE_DIR="${POET_E2E_STATE:-/var/lib/poet-e2e}"
# Runtime directories (sockets, container state, network namespaces, mounts).
RUN_DIR="/run/poet-e2e"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"

# A private bridge: pods, the node and every listener live on it or on loopback.
BRIDGE="poete2e0"
POD_CIDR="10.244.0.0/24"
BRIDGE_IP="10.244.0.1"
# A /20: room for a Service per monitor in the operator benchmark (500 and more), besides the suite.
SERVICE_CIDR="10.96.0.0/20"
KUBERNETES_SVC_IP="10.96.0.1"
DNS_IP="10.96.0.10"
APISERVER_PORT=6443
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
NODE_NAME="poet-e2e"
GUARD_CHAIN="POET-E2E-GUARD"

# Images kept without a registry. The base image carries the name the project's Dockerfiles use in FROM.
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
BASE_IMAGE="${POET_BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}"

# Kernel settings the cluster (kubelet, kube-proxy, the CNI bridge) may change; restored on the way down.
SYSCTLS=(
  net/ipv4/ip_forward
  net/bridge/bridge-nf-call-iptables
  net/bridge/bridge-nf-call-ip6tables
  net/bridge/bridge-nf-call-arptables
  net/ipv4/conf/all/route_localnet
  net/ipv6/conf/all/forwarding
  vm/overcommit_memory
  vm/panic_on_oom
  kernel/panic
  kernel/panic_on_oops
  kernel/keys/root_maxkeys
  kernel/keys/root_maxbytes
  net/netfilter/nf_conntrack_max
  net/netfilter/nf_conntrack_tcp_timeout_established
  net/netfilter/nf_conntrack_tcp_timeout_close_wait
)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Poll a command until it succeeds or the deadline (seconds) passes.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || return 1
    sleep 0.5
  done
  log "$what ready"
}

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
