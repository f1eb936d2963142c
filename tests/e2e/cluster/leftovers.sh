#!/usr/bin/env bash
# List anything the local cluster left on the host after cluster-down.sh: processes started from its
# binaries or bound to its containerd, mounts under its directories, its bridge, veths or route, and
# iptables chains of kube-proxy, the CNI plugins or the guard. Exits 1 when something is left.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

found=0
report() { echo "left over: $*"; found=1; }

# One grep over every command line; the grep itself has exited by the time its matches are checked.
for f in $(grep -lsF -e "$CONTAINERD_SOCK" -e "$STATE_DIR/containerd/config.toml" -e "$BIN_DIR/" \
    /proc/[0-9]*/cmdline || true); do
  cmd="$( { tr '\0' ' ' < "$f"; } 2>/dev/null || true)"
  [[ -n "$cmd" ]] && report "process $(basename "$(dirname "$f")"): $cmd"
done
while read -r mp; do report "mount $mp"; done < <(awk '{print $5}' /proc/self/mountinfo \
  | grep -E "^($RUN_DIR|$STATE_DIR)(/|$)" || true)
[[ -e "/sys/class/net/$BRIDGE" ]] && report "bridge $BRIDGE"
ip -4 route show "$SERVICE_CIDR" | grep -q . && report "route $SERVICE_CIDR"
for ipt in iptables ip6tables; do
  command -v "$ipt-save" >/dev/null || continue
  while read -r chain; do report "$ipt chain $chain"; done < <("$ipt-save" 2>/dev/null \
    | grep -oE '^:(KUBE-[A-Z0-9-]+|CNI-HOSTPORT-[A-Z]+|POET-E2E[A-Z-]*)' | tr -d : || true)
done
for cg in /sys/fs/cgroup/*/kubepods; do [[ -d "$cg" ]] && report "cgroup $cg"; done
(( found == 0 )) && echo "nothing left over"
exit "$found"
