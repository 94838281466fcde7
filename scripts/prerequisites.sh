#!/usr/bin/env bash
# Installs the system packages the tests and samples use, once: only what is missing, each apt step
# retried once (apt fails now and then mid-install). Needs root; without it, says what to install.
#   tshark                      pcap tests and the interop judge read captures back
#   iproute2 iptables ethtool   network namespaces, veth pairs, loss by iptables, offloads off
#   curl iputils-ping           kernel-side clients of the interop tests
#   wrk nghttp2-client          HTTP load (wrk) and HTTP/2 (h2load) against the sample server
#   hping3 python3-scapy        SYN floods and forged segments of the attack tests (scapy runs under /usr/bin/python3)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(tshark iproute2 iptables ethtool curl iputils-ping wrk nghttp2-client hping3 python3-scapy)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "[prerequisites] missing packages: ${missing[*]} — run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

retry_once() {
  "$@" && return 0
  echo "[prerequisites] failed, retrying once: $*" >&2
  sleep 5
  "$@"
}

echo "[prerequisites] installing: ${missing[*]}" >&2
# tshark would ask whether non-root users may capture: answer no, ahead of time.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
retry_once timeout 600 apt-get update
retry_once timeout 900 apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
