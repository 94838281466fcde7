#!/usr/bin/env bash
# Profiles the HelloServer sample on one transport under one wrk workload, in the namespaces of kestrel.sh:
#   perf record -e cpu-clock -g on the server process (DOTNET_PerfMapEnabled=1 and DOTNET_EnableWriteXorExecute=0, so
#   JIT frames have names: with W^X on, perf sees code in "memfd:doublemapper" and cannot name it), then
#   perf report by symbol and by thread, plus the server's CPU time (user/sys, from /proc) per MB or per request.
# Usage: benchmarks/load/profile.sh [TRANSPORT=Vso|Sockets] [WORKLOAD=1mib|pipelined|plaintext|h2c] [SECONDS=10]
# Output: /tmp/vso-profile-TRANSPORT-WORKLOAD.{perf.data,symbols.txt,threads.txt,wrk.txt}
# Needs root, wrk, perf. Namespaces vso-pc-PID-1 / vso-ps-PID-1 and the server are removed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../netns.sh"
transport="${1:-Vso}"
workload="${2:-1mib}"
secs="${3:-10}"
out="/tmp/vso-profile-$transport-$workload"

trap 'vso_cleanup' EXIT INT TERM
vso_cleanup_stale
dotnet build -c Release -v q -nologo "$root/samples/Vso.Samples.HelloServer" >/dev/null
sample_dir="$root/samples/Vso.Samples.HelloServer/bin/Release/net10.0"

client="vso-pc-$$-1"; server="vso-ps-$$-1"
vso_ns_add pc; vso_ns_add ps
vso_veth "$client" vsoc0 "$server" vsos0
ip -n "$client" addr add 198.18.0.1/24 dev vsoc0
if [[ "$transport" == Sockets ]]; then ip -n "$server" addr add 198.18.0.2/24 dev vsos0; fi
base="http://198.18.0.2:8080"
# Extra environment for the server (A/B runs; set last, so it overrides): VSO_ENV="Vso__AfPacket__SegmentationOffload=false"
(cd "$sample_dir" && exec ip netns exec "$server" env DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 Transport="$transport" Vso__Backend=AfPacket \
   Vso__Interface=vsos0 Vso__Address=198.18.0.2/24 H2cUrl=http://198.18.0.2:8081 Logging__LogLevel__Default=Warning \
   Logging__LogLevel__Microsoft.Hosting.Lifetime=Warning ${VSO_ENV:-} dotnet Vso.Samples.HelloServer.dll --urls "$base" \
   >"$out.server.log" 2>&1) &
VSO_PIDS+=("$!")
vso_wait_http "$client" "$base/"
pid=$(pgrep -n -f 'Vso.Samples.HelloServer.dll --urls' || true)
[[ -n "$pid" ]] || { echo "no server pid" >&2; exit 1; }

case "$workload" in
  1mib) args=(-t2 -c8 "$base/bytes/1048576") ;;
  pipelined) args=(-t2 -c64 -s "$here/pipeline.lua" "$base/") ;;
  plaintext) args=(-t2 -c64 "$base/") ;;
  h2c) args=() ;; # h2load -c16 -m10 -t2, prior knowledge, on the sample's h2c port
  *) echo "unknown workload $workload" >&2; exit 1 ;;
esac

# load SECONDS: the workload from the client namespace, wrk's or h2load's report on stdout.
load() {
  if [[ "$workload" == h2c ]]; then
    ip netns exec "$client" h2load -D "$1" -c16 -m10 -t2 "http://198.18.0.2:8081/"
  else
    ip netns exec "$client" wrk -d"$1s" --latency "${args[@]}"
  fi
}

# Warm up (JIT tiering), then measure CPU time and sample.
load 6 >/dev/null 2>&1
ticks=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$out.perf.data" -- sleep "$secs" >/dev/null 2>&1 &
perf_pid=$!
load "$secs" >"$out.wrk.txt" 2>&1
wait "$perf_pid" || true
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
cat "$out.wrk.txt"
python3 - "$out.wrk.txt" "$(( u1 - u0 ))" "$(( s1 - s0 ))" "$ticks" "$secs" <<'PY'
import re, sys
txt = open(sys.argv[1]).read()
user, sys_, hz, secs = int(sys.argv[2]) / int(sys.argv[4]), int(sys.argv[3]) / int(sys.argv[4]), 0, float(sys.argv[5])
m = re.search(r"Requests/sec:\s+([\d.]+)", txt) or re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", txt)
rps = float(m.group(1))
m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", txt) or re.search(r"req/s, ([\d.]+)([KMG]?B)/s", txt)
mbps = float(m.group(1)) * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576, "GB": 1073.741824}[m.group(2)]
cpu = user + sys_
print(f"server CPU over {secs:.0f} s: user {user:.2f} s, sys {sys_:.2f} s ({cpu / secs:.2f} cores); "
      f"{cpu / (mbps * secs) * 1e6:.0f} us per MB, {cpu / (rps * secs) * 1e6:.1f} us per request")
PY
perf report -i "$out.perf.data" --no-children -g none --sort symbol --stdio 2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' | head -60 >"$out.symbols.txt" || true
perf report -i "$out.perf.data" --no-children -g none --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -20 >"$out.threads.txt" || true
echo "--- by thread ($out.threads.txt)"; cat "$out.threads.txt"
echo "--- by symbol ($out.symbols.txt)"; head -40 "$out.symbols.txt"
