#!/usr/bin/env bash
# Shared helpers for the real-link benchmarks: private network namespaces named vso-b<role>-<pid>-1, deleted on
# exit (also on Ctrl-C), stale ones of dead PIDs removed at start. Offloads off, IPv6 off, no default route.
# Source it:  . "$(dirname "$0")/../netns.sh"
set -euo pipefail

VSO_NS=()
VSO_PIDS=()

vso_cleanup_stale() {
  local ns pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^vso-[a-z]+-[0-9]+-[0-9]+$' || true); do
    pid=$(echo "$ns" | cut -d- -f3)
    if ! kill -0 "$pid" 2>/dev/null; then ip netns delete "$ns" 2>/dev/null || true; fi
  done
}

vso_cleanup() {
  local pid ns
  for pid in "${VSO_PIDS[@]+"${VSO_PIDS[@]}"}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${VSO_PIDS[@]+"${VSO_PIDS[@]}"}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for ns in "${VSO_NS[@]+"${VSO_NS[@]}"}"; do ip netns delete "$ns" 2>/dev/null || true; done
}

# vso_ns_add ROLE -> prints the namespace name
vso_ns_add() {
  local ns="vso-$1-$$-1"
  ip netns add "$ns"
  VSO_NS+=("$ns")
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
}

vso_offloads_off() { # NS DEV
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}

# vso_veth NS_A DEV_A NS_B DEV_B: a veth pair created in NS_A, one end moved to NS_B, both up. Offloads off, unless
# VSO_OFFLOADS=on: then both ends keep the kernel's defaults (TSO, checksum offload), as NICs have them, and the kernel's
# TCP and the stack's AF_PACKET and TAP links all use them (the AF_XDP link needs them off: its scripts turn them off).
vso_veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
  if [ "${VSO_OFFLOADS:-off}" != on ]; then
    vso_offloads_off "$1" "$2"
    vso_offloads_off "$3" "$4"
  fi
}

# vso_wait_http NS URL: waits up to 20 s for URL to answer.
vso_wait_http() {
  for _ in $(seq 200); do
    if ip netns exec "$1" curl --noproxy '*' -s -o /dev/null --max-time 1 "$2"; then return 0; fi
    sleep 0.1
  done
  echo "server at $2 did not come up" >&2
  return 1
}
