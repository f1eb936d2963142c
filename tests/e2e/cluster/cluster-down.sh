#!/usr/bin/env bash
# Take down the local e2e cluster and undo what cluster-up.sh changed on this host: processes
# (recorded PIDs, their container shims and pod processes), mounts under the cluster's directories,
# iptables chains, the bridge and its route, sysctls and paths the kubelet or CNI created.
# Idempotent: without a journal in the state directory there is nothing to undo.
set -euo pipefail
shopt -s globstar nullglob
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

[[ $EUID == 0 ]] || die "run as root"
if [[ ! -e "$STATE_DIR/journal" ]]; then
  log "no cluster state in $STATE_DIR: nothing to take down"
  exit 0
fi
journaled() { grep -qx "$1" "$STATE_DIR/journal"; }

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

# Stop a recorded daemon by its PID: TERM, then KILL after a grace period.
stop_daemon() {
  local name="$1" pidfile="$STATE_DIR/pids/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 10 ))
    while alive "$pid" && (( $(date +%s) < deadline )); do sleep 0.2; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

# Processes of pods: everything in the kubelet's pod cgroups.
kill_pod_processes() {
  local procs pid
  for procs in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/**/cgroup.procs; do
    [[ -f "$procs" ]] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done < "$procs"
  done
}

# The runc shims containerd started for this cluster carry its socket address on their command line.
kill_shims() {
  local f pid exe
  for f in $(grep -lsF -- "$CONTAINERD_SOCK" /proc/[0-9]*/cmdline || true); do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    [[ "$exe" == */containerd-shim* ]] && kill -KILL "$pid" 2>/dev/null || true
  done
}

remove_pod_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$root" ]] || continue
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

unmount_under() {  # directory
  local dir="$1" mp
  [[ -n "$dir" && "$dir" != "/" ]] || return 0
  # Deepest first; mountinfo escapes spaces as \040.
  { awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' | grep -E "^$dir(/|$)" || true; } | sort -r \
    | while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
}

# Chains the cluster added (not present before up) and every rule jumping to them.
clean_iptables() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    local before="$STATE_DIR/chains.before.$ipt"
    [[ -f "$before" ]] || before=/dev/null
    local added
    added="$("$ipt-save" 2>/dev/null | awk '/^\*/{t=substr($0,2)} /^:/{print t, substr($1,2)}' \
      | grep -E ' (KUBE-|CNI-|POET-E2E)' | grep -vxF -f "$before" || true)"
    [[ -n "$added" ]] || continue
    while read -r table chain; do
      # Delete rules in any chain that jump to this one, then empty and remove it.
      { "$ipt-save" -t "$table" 2>/dev/null | grep -E "^-A .* -j $chain( |$)" || true; } | sed 's/^-A /-D /' \
        | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null || true; done
    done <<< "$added"
    while read -r table chain; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done <<< "$added"
    while read -r table chain; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done <<< "$added"
  done
}

restore_sysctls() {
  [[ -f "$STATE_DIR/sysctl.before" ]] || return 0
  local key value
  while read -r key value; do
    [[ "$(cat "/proc/sys/$key" 2>/dev/null)" == "$value" ]] || echo "$value" > "/proc/sys/$key" 2>/dev/null \
      || log "could not restore $key=$value"
  done < "$STATE_DIR/sysctl.before"
}

remove_paths_created() {
  local path
  while read -r path; do
    [[ -n "$path" ]] || continue
    journaled "existed $path" || rm -rf "$path"
  done < <(sed -n 's/^maybe_created //p' "$STATE_DIR/journal")
  # Where the paths are shared with other tools, remove only this cluster's entries.
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE_DIR/*" -delete 2>/dev/null || true
  fi
  if [[ -d /var/lib/cni ]]; then
    find /var/lib/cni -maxdepth 2 -name 'poet-e2e-*' -exec rm -rf {} + 2>/dev/null || true
  fi
}

T0=$(date +%s)
for name in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver; do stop_daemon "$name"; done
kill_pod_processes
stop_daemon containerd
kill_shims
kill_pod_processes
stop_daemon etcd
if [[ -x "$BIN_DIR/kube-proxy" ]]; then
  "$BIN_DIR/kube-proxy" --cleanup > "$STATE_DIR/logs/kube-proxy-cleanup.log" 2>&1 || true
fi
clean_iptables
unmount_under "$RUN_DIR"
unmount_under "$STATE_DIR"
if [[ -e "/sys/class/net/$BRIDGE" ]]; then
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE"
fi
restore_sysctls
remove_pod_cgroups
remove_paths_created
rm -rf "$RUN_DIR"
# Keep the logs for a post-mortem; everything else (keys, etcd, containerd's store) goes.
find "$STATE_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name journal -exec rm -rf {} +
rm -f "$STATE_DIR/journal"
log "cluster down in $(( $(date +%s) - T0 ))s (logs kept in $STATE_DIR/logs)"
