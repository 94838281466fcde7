#!/usr/bin/env bash
# Bulk download, 64 MiB per transfer with curl (the kernel's TCP as client), from:
#   stack/AF_PACKET  the Vso stack at 198.18.0.2 on an AF_PACKET socket bound to a veth end with no kernel address
#   stack/TAP        the Vso stack at 198.18.2.2 behind a TAP device (kernel side 198.18.2.1) in the client namespace
#   stack/AF_XDP     the Vso stack at 198.18.3.2 on an AF_XDP socket (copy mode on veth) whose UMEM covers the pinned
#                    pool the responder sends from: the payload leaves in place (multi-buffer descriptors)
#   stack/AF_XDP-cp  the same at 198.18.4.2 with a private UMEM: every frame copied into it (VSO_AFXDP_UMEM=private)
#   kernel           the kernel's own TCP at 198.18.1.2 in the same server namespace, over a second veth pair: a
#                    python3 http.server handler writing the same bytes from memory in 251*4096-byte chunks, as the
#                    stack's responder does (the transfer is bound by the kernel's TCP, not by Python)
# Runs ROUNDS rounds, alternating the servers, and prints the median throughput of each and the ratio to the
# kernel's, all measured in this one run, with each server process's CPU time (utime + stime) per MiB sent and its
# busiest threads (CPU seconds per second of transfer, from /proc/PID/task). Needs root. Usage: benchmarks/load/bulk.sh [ROUNDS=5] [MIB=64]
# VSO_AFPACKET_RING=V3 puts the AF_PACKET server on the TPACKET_V3 receive ring (default V2). VSO_OFFLOADS=on keeps the
# devices' offloads on (benchmarks/netns.sh) for the kernel, AF_PACKET and TAP; AF_XDP's veths have them off either way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../netns.sh"
rounds="${1:-5}"
mib="${2:-64}"
bytes=$((mib * 1024 * 1024))

trap vso_cleanup EXIT INT TERM
vso_cleanup_stale

dotnet build -c Release -v q -nologo "$root/benchmarks/Vso.Transport.RealLinkServer" >/dev/null
server_dll="$root/benchmarks/Vso.Transport.RealLinkServer/bin/Release/net10.0/Vso.Transport.RealLinkServer.dll"

client="vso-bc-$$-1"; server="vso-bs-$$-1"
vso_ns_add bc; vso_ns_add bs
vso_veth "$client" vsoc0 "$server" vsos0      # stack's wire: no kernel address on vsos0
ip -n "$client" addr add 198.18.0.1/24 dev vsoc0
vso_veth "$client" vsoc1 "$server" vsos1      # kernel's wire
ip -n "$client" addr add 198.18.1.1/24 dev vsoc1
ip -n "$server" addr add 198.18.1.2/24 dev vsos1
vso_veth "$client" vsoc2 "$server" vsos2      # AF_XDP's wire (UMEM over the pool)
ip -n "$client" addr add 198.18.3.1/24 dev vsoc2
vso_veth "$client" vsoc3 "$server" vsos3      # AF_XDP's wire (private UMEM)
ip -n "$client" addr add 198.18.4.1/24 dev vsoc3
for dev in 2 3; do vso_offloads_off "$client" "vsoc$dev"; vso_offloads_off "$server" "vsos$dev"; done

# The kernel serves the same bytes (byte i = i % 251) from tmpfs.
www="$(mktemp -d /dev/shm/vso-bulk-XXXXXX)"
trap 'vso_cleanup; rm -rf "$www"' EXIT INT TERM
mkdir -p "$www/bytes"
python3 -c "import sys; p=bytes(i % 251 for i in range(251*4096)); n=$bytes; f=open(sys.argv[1],'wb')
while n>0: f.write(p[:min(n,len(p))]); n-=len(p)" "$www/bytes/$bytes"

ip netns exec "$server" python3 -c '
import http.server, socketserver
p = bytes(i % 251 for i in range(251 * 4096))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[1])
        self.send_response(200); self.send_header("Content-Length", str(n)); self.end_headers()
        mv = memoryview(p)
        while n > 0:
            k = min(n, len(p)); self.wfile.write(mv[:k]); n -= k
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("198.18.1.2", 8080), H).serve_forever()' >/dev/null 2>&1 &
VSO_PIDS+=($!)
declare -A pid_of=([kernel]=$!)
ip netns exec "$server" dotnet "$server_dll" afpacket vsos0 198.18.0.2 8080 >/dev/null &
VSO_PIDS+=($!); pid_of[stack/AF_PACKET]=$!
ip netns exec "$client" dotnet "$server_dll" tap vsotap0 198.18.2.2 198.18.2.1/24 8080 >/dev/null &
VSO_PIDS+=($!); pid_of[stack/TAP]=$!
ip netns exec "$server" dotnet "$server_dll" afxdp vsos2 198.18.3.2 8080 >/dev/null &
VSO_PIDS+=($!); pid_of[stack/AF_XDP]=$!
ip netns exec "$server" env VSO_AFXDP_UMEM=private dotnet "$server_dll" afxdp vsos3 198.18.4.2 8080 >/dev/null &
VSO_PIDS+=($!); pid_of[stack/AF_XDP-cp]=$!
sleep 1
if [ "${VSO_OFFLOADS:-off}" != on ]; then vso_offloads_off "$client" vsotap0; fi

declare -A url=(
  [kernel]="http://198.18.1.2:8080/bytes/$bytes"
  [stack/AF_PACKET]="http://198.18.0.2:8080/bytes/$bytes"
  [stack/TAP]="http://198.18.2.2:8080/bytes/$bytes"
  [stack/AF_XDP]="http://198.18.3.2:8080/bytes/$bytes"
  [stack/AF_XDP-cp]="http://198.18.4.2:8080/bytes/$bytes"
)
servers="kernel stack/AF_PACKET stack/TAP stack/AF_XDP stack/AF_XDP-cp"
for k in "${!url[@]}"; do vso_wait_http "$client" "${url[$k]%/bytes/*}/bytes/1"; done

# Each thread of process $1: "tid ticks name" (utime + stime in clock ticks, proc(5); spaces in names as _).
thread_ticks() {
  local t stat comm
  for t in /proc/"$1"/task/*; do
    { read -r stat <"$t/stat" && read -r comm <"$t/comm"; } 2>/dev/null || continue
    stat="${stat##*) }"; set -- $stat
    echo "${t##*/} $((${12} + ${13})) ${comm//[ :]/_}"
  done
}

expected=$(sha256sum "$www/bytes/$bytes" | cut -d' ' -f1)
declare -A speeds cpu busiest
for r in $(seq "$rounds"); do
  for k in $servers; do
    threads_before=$(thread_ticks "${pid_of[$k]}"); ticks_before=$(awk '{print $14 + $15}' "/proc/${pid_of[$k]}/stat")
    out=$(ip netns exec "$client" curl --noproxy '*' -sS --fail --max-time 60 -o "$www/dl" -w '%{speed_download} %{time_total}' "${url[$k]}")
    threads_after=$(thread_ticks "${pid_of[$k]}"); ticks_after=$(awk '{print $14 + $15}' "/proc/${pid_of[$k]}/stat")
    got=$(sha256sum "$www/dl" | cut -d' ' -f1)
    [ "$got" = "$expected" ] || { echo "$k: sha256 mismatch" >&2; exit 1; }
    speeds[$k]="${speeds[$k]:-} ${out% *}"
    # The server's CPU ms per MiB and its two busiest threads (CPU seconds per second of this transfer).
    read -r ms_per_mib busy < <(python3 - "$threads_before" "$threads_after" "$(getconf CLK_TCK)" "${out#* }" "$mib" $((ticks_after - ticks_before)) <<'PY'
import sys, collections
def parse(text): return {l.split()[0]: (int(l.split()[1]), l.split()[2]) for l in text.splitlines() if l.strip()}
before, after = parse(sys.argv[1]), parse(sys.argv[2])
hz, secs, mib = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
groups = collections.defaultdict(lambda: [0, 0])
for tid, (ticks, name) in after.items():
    used = ticks - before.get(tid, (0, name))[0]
    if used > 0: groups[name][0] += used; groups[name][1] += 1
total = int(sys.argv[6])  # the process's own count also holds threads that ended during the transfer
top = sorted(groups.items(), key=lambda g: -g[1][0])[:2]
print(f"{1000 * total / hz / mib:.2f}", ",".join(f"{n}:{u / hz / secs:.2f}" + (f"x{c}" if c > 1 else "") for n, (u, c) in top) or "-")
PY
)
    cpu[$k]="${cpu[$k]:-} $ms_per_mib"
    busiest[$k]="$busy"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
kernel_median=$(echo "${speeds[kernel]}" | median)
packet_median=$(echo "${speeds[stack/AF_PACKET]}" | median)
printf '%-16s %12s %10s %12s %12s   %s\n' server 'MB/s' 'x kernel' 'x AF_PACKET' 'CPU ms/MiB' "busiest server threads, last round (cores)"
for k in $servers; do
  m=$(echo "${speeds[$k]}" | median)
  c=$(echo "${cpu[$k]}" | median)
  printf '%-16s %12.1f %10.2f %12.2f %12.2f   %s\n' "$k" "$(echo "$m / 1000000" | bc -l)" "$(echo "$m / $kernel_median" | bc -l)" "$(echo "$m / $packet_median" | bc -l)" "$c" "${busiest[$k]//,/, }"
done
echo "($rounds rounds of $mib MiB, curl speed_download, median; CPU = utime + stime of the server process, the kernel's being python3's system time for its sends)"
