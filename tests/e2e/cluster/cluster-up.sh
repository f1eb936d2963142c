#!/usr/bin/env bash
# Bring up a single-node Kubernetes cluster on this machine from locally built parts:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (iptables)
# on Debian's containerd and runc, pods on a private bridge. Prints the admin kubeconfig path.
#
# Safety: every listener is on loopback or the bridge; the service range is routed to the bridge so
# cluster traffic dies there instead of leaving by the default route; a guard chain drops anything
# forwarded between the bridge and any other interface. Everything changed is journaled in the state
# directory and undone by cluster-down.sh, which this script also runs first and on failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
# shellcheck source=certs.sh
source "$HERE/certs.sh"

[[ $EUID == 0 ]] || die "run as root: the cluster needs containerd, iptables and mounts"
T0=$(date +%s)

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v podman >/dev/null || missing+=(podman)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v gcc >/dev/null || missing+=(gcc)
  if (( ${#missing[@]} )); then
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Refuse ranges the host already uses: the cluster must not shadow or reach a real network.
check_networks() {
  local cidr routes
  for cidr in "$POD_CIDR" "$SERVICE_CIDR"; do
    routes="$( { ip -4 route show table all root "$cidr"; ip -4 route show table all match "$cidr"; } \
      | grep -vE '^(default|broadcast|local|unreachable) |^0\.0\.0\.0/0' || true)"
    [[ -z "$routes" ]] || die "$cidr overlaps a network on this host: $routes"
  done
  [[ -e "/sys/class/net/$BRIDGE" ]] && die "bridge $BRIDGE already exists (run cluster-down.sh)"
  return 0
}

journal_before() {
  mkdir -p "$STATE_DIR/pids" "$STATE_DIR/logs" "$RUN_DIR"
  : > "$STATE_DIR/journal"
  local s
  for s in "${SYSCTLS[@]}"; do
    [[ -e "/proc/sys/$s" ]] && echo "$s $(cat "/proc/sys/$s")"
  done > "$STATE_DIR/sysctl.before"
  local ipt
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    "$ipt-save" 2>/dev/null | awk '/^\*/{t=substr($0,2)} /^:/{print t, substr($1,2)}' > "$STATE_DIR/chains.before.$ipt"
  done
  # Paths the kubelet, containerd or CNI may create outside the cluster's directories.
  local p
  for p in /var/log/containers /var/log/pods /var/lib/kubelet /var/lib/cni /run/containerd /opt/containerd \
      /opt/cni /run/netns; do
    echo "maybe_created $p"
    [[ -e "$p" ]] && echo "existed $p"
  done >> "$STATE_DIR/journal"
  echo "up_started" >> "$STATE_DIR/journal"
}

setup_network() {
  log "network: bridge $BRIDGE $BRIDGE_IP, pods $POD_CIDR, services $SERVICE_CIDR"
  ip link add "$BRIDGE" type bridge
  echo "bridge_created" >> "$STATE_DIR/journal"
  ip addr add "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service addresses are virtual: any packet to one that kube-proxy does not rewrite dies on the bridge.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE"
  echo "service_route" >> "$STATE_DIR/journal"
  # Guard before anything forwards: nothing crosses between the bridge and another interface, and
  # nothing from another interface reaches the cluster's addresses. mangle runs before kube-proxy's filter rules.
  iptables -t mangle -N "$GUARD_CHAIN"
  echo "guard_chain" >> "$STATE_DIR/journal"
  iptables -t mangle -A "$GUARD_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -t mangle -A "$GUARD_CHAIN" -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  iptables -t mangle -I FORWARD 1 -j "$GUARD_CHAIN"
  iptables -t mangle -N "$GUARD_CHAIN-IN"
  iptables -t mangle -A "$GUARD_CHAIN-IN" -i lo -j RETURN
  iptables -t mangle -A "$GUARD_CHAIN-IN" -i "$BRIDGE" -j RETURN
  iptables -t mangle -A "$GUARD_CHAIN-IN" -d "$POD_CIDR" -j DROP
  iptables -t mangle -A "$GUARD_CHAIN-IN" -d "$SERVICE_CIDR" -j DROP
  iptables -t mangle -I PREROUTING 1 -j "$GUARD_CHAIN-IN"
  # Pods reach Services and each other through the host's stack.
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
}

write_configs() {
  mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/containerd" "$STATE_DIR/kubelet" "$STATE_DIR/pod-logs"
  cat > "$STATE_DIR/cni/net.d/10-poet-e2e.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "poet-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN_DIR/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  cat > "$STATE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$STATE_DIR/containerd/root"
state = "$RUN_DIR/containerd"
# Nothing on this host may lower oom_score_adj (no CAP_SYS_RESOURCE).
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$RUN_DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$STATE_DIR/cni/net.d"
TOML
  # Pods resolve nothing outside: the only nameserver is a service address with no backend,
  # which the service route keeps on the bridge.
  printf 'nameserver %s\noptions ndots:5\n' "$DNS_IP" > "$STATE_DIR/resolv.conf"
  cat > "$STATE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
# Images exist only locally: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $STATE_DIR/resolv.conf
podLogsDir: $STATE_DIR/pod-logs
staticPodPath: ""
serializeImagePulls: false
maxPods: 64
hairpinMode: hairpin-veth
YAML
  cat > "$STATE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
# Only used to tell kube-proxy the node IP here; it listens only on the loopback ports below.
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
nodePortAddresses: ["$BRIDGE_IP/32"]
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

start_daemon() {  # name command...
  local name="$1"; shift
  setsid "$@" > "$STATE_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/pids/$name.pid"
}

curl_api() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$BRIDGE_IP:$APISERVER_PORT$1"
}

node_ready() {
  curl_api "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
conds = json.load(sys.stdin)["status"].get("conditions", [])
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else 1)'
}

import_images() {
  local archive
  for archive in "$IMAGE_DIR"/*.tar "$IMAGE_DIR"/project/*.tar; do
    [[ -f "$archive" ]] || continue
    ctr_k8s images import "$archive" >/dev/null
  done
}

start_all() {
  local B="$BIN_DIR"
  start_daemon containerd containerd --config "$STATE_DIR/containerd/config.toml"
  wait_for containerd 30 ctr_k8s version || die "containerd did not start: $STATE_DIR/logs/containerd.log"
  start_daemon etcd "$B/etcd" --name poet-e2e --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "poet-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824
  # Images load while etcd and the API server start.
  import_images
  log "images imported into containerd"
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health" \
    || die "etcd did not start: $STATE_DIR/logs/etcd.log"
  start_daemon kube-apiserver "$B/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false
  wait_for kube-apiserver 90 curl_api /readyz || die "kube-apiserver not ready: $STATE_DIR/logs/kube-apiserver.log"
  start_daemon kube-controller-manager "$B/kube-controller-manager" \
    --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false
  start_daemon kube-scheduler "$B/kube-scheduler" \
    --kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
  start_daemon kubelet "$B/kubelet" --config "$STATE_DIR/kubelet/config.yaml" \
    --kubeconfig "$STATE_DIR/kubelet.kubeconfig" --root-dir "$STATE_DIR/kubelet/root" \
    --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP"
  start_daemon kube-proxy "$B/kube-proxy" --config "$STATE_DIR/kube-proxy.yaml"
  wait_for "node $NODE_NAME" 120 node_ready || die "node not Ready: see $STATE_DIR/logs/kubelet.log"
  # Pods need the default ServiceAccount and the root CA ConfigMap before they can be created.
  wait_for "default ServiceAccount" 60 curl_api /api/v1/namespaces/default/serviceaccounts/default \
    || die "no default ServiceAccount: $STATE_DIR/logs/kube-controller-manager.log"
}

main() {
  # A previous cluster (or a half-done start) is taken down first.
  [[ -e "$STATE_DIR/journal" ]] && "$HERE/cluster-down.sh"
  ensure_packages
  check_networks
  "$HERE/build-binaries.sh"
  "$HERE/build-base-images.sh"
  trap 'rc=$?; if (( rc != 0 )); then log "cluster-up failed; taking down what was started"; "$HERE/cluster-down.sh"; fi' EXIT
  rm -rf "$STATE_DIR" && mkdir -p "$STATE_DIR" && chmod 0700 "$STATE_DIR"
  journal_before
  setup_network
  make_pki
  write_configs
  start_all
  trap - EXIT
  echo "up_complete" >> "$STATE_DIR/journal"
  log "cluster up in $(( $(date +%s) - T0 ))s; kubeconfig: $STATE_DIR/admin.kubeconfig"
  echo "$STATE_DIR/admin.kubeconfig"
}

main "$@"
