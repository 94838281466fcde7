#!/usr/bin/env bash
# Kestrel on the Vso transport (AF_PACKET) against Kestrel's Sockets transport: the HelloServer sample, the same app
# at the same address 198.18.0.2 in the same namespaces, alternately within one run:
#   Vso      the sample with Transport=Vso, Vso__Backend=AfPacket on veth end vsos0 (no kernel address)
#   Sockets  the sample with Transport=Sockets; 198.18.0.2/24 is put on vsos0 for the kernel while it runs
# Workloads (wrk -t2 unless said; --latency): plaintext GET / at -c1 (one connection, one request at a time: the
# round trip), -c64 and -c256; new connections (Connection: close, -c64: one handshake per request); plaintext pipelined 16 deep
# (pipeline.lua) at -c64; 1 MiB responses (/bytes/1048576) at -c8; h2load h2c prior knowledge (-c16 -m10); the
# 1 MiB case under 1% random loss each way (iptables statistic in the client namespace, INPUT and OUTPUT).
# Each server start is followed by 8 s of unrecorded warm-up (the four workload kinds, 2 s each) so that both run JIT-tiered code.
# Prints the median over ROUNDS of requests/s, MB/s, p50, p99, the Vso/Sockets ratio of requests/s, and the server's
# CPU cost (utime + stime of the server process from /proc/PID/stat over the workload) per 1,000 requests and per MiB,
# and the busiest server threads with the cores each kept busy (from /proc/PID/task/*/stat), so it shows which work ran where.
# VSO_TRANSPORTS (default "Vso Sockets") may add VsoPool: the Vso sample with Vso__ApplicationOnEngineThread=false (Kestrel's
# continuations on the thread pool; the default runs them on the engine thread after its turn), VsoPoll and VsoEnginePoll: the same with Vso__BusyPollMicroseconds=50 (the engine polls
# 50 µs before sleeping while traffic is steady), VsoWake and VsoEngineWake: with Vso__TurnOnCallingThread=false (a flush
# wakes the sleeping engine instead of running its turn on the flushing thread, the default); each transport other than Sockets gets its own rows, its ratio against Sockets.
# VSO_WORKLOADS (default: all) names the workloads to run, for example "close-c64 h2c-c16-m10".
# Needs root, wrk, h2load (nghttp2-client), iptables, ethtool. Usage: benchmarks/load/kestrel.sh [ROUNDS=3] [SECONDS=10]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../netns.sh"
rounds="${1:-3}"
secs="${2:-10}"

for tool in wrk h2load iptables ethtool curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client iptables ethtool curl)" >&2; exit 1; }
done

results="$(mktemp /tmp/vso-kestrel-bench-XXXXXX)"
trap 'vso_cleanup; rm -f "$results"' EXIT INT TERM
vso_cleanup_stale

dotnet build -c Release -v q -nologo "$root/samples/Vso.Samples.HelloServer" >/dev/null
sample_dir="$root/samples/Vso.Samples.HelloServer/bin/Release/net10.0"

client="vso-kc-$$-1"; server="vso-ks-$$-1"
vso_ns_add kc; vso_ns_add ks
vso_veth "$client" vsoc0 "$server" vsos0
ip -n "$client" addr add 198.18.0.1/24 dev vsoc0
base="http://198.18.0.2:8080"

pid=""
start_server() { # TRANSPORT
  local t="$1" transport="$1" inline="${Vso__ApplicationOnEngineThread:-true}" poll="${Vso__BusyPollMicroseconds:-0}"
  if [[ "$t" == Sockets ]]; then ip -n "$server" addr add 198.18.0.2/24 dev vsos0; fi
  if [[ "$t" == VsoEngine* ]]; then transport=Vso; inline=true; fi
  if [[ "$t" == VsoPool* ]]; then transport=Vso; inline=false; fi
  if [[ "$t" == Vso*Poll ]]; then transport=Vso; poll=50; fi
  local caller="${Vso__TurnOnCallingThread:-true}"; if [[ "$t" == Vso*Wake ]]; then transport=Vso; caller=false; fi
  (cd "$sample_dir" && exec ip netns exec "$server" env Transport="$transport" Vso__ApplicationOnEngineThread="$inline" Vso__BusyPollMicroseconds="$poll" Vso__TurnOnCallingThread="$caller" Vso__Backend=AfPacket Vso__Interface=vsos0 \
     Vso__Address=198.18.0.2/24 H2cUrl=http://198.18.0.2:8081 Logging__LogLevel__Default=Warning \
     Logging__LogLevel__Microsoft.Hosting.Lifetime=Warning dotnet Vso.Samples.HelloServer.dll --urls "$base" \
     >"/tmp/vso-kestrel-bench-$t.log" 2>&1) &
  pid=$!
  VSO_PIDS+=("$pid")
  vso_wait_http "$client" "$base/"
  # Warm-up, not recorded: the JIT tiers both transports' code (the stack's own too) before anything is measured.
  ip netns exec "$client" wrk -t2 -c64 -d2s "$base/" >/dev/null 2>&1 || true
  ip netns exec "$client" wrk -t2 -c64 -d2s -s "$here/pipeline.lua" "$base/" >/dev/null 2>&1 || true
  ip netns exec "$client" wrk -t2 -c8 -d2s "$base/bytes/1048576" >/dev/null 2>&1 || true
  ip netns exec "$client" h2load -D 2 -c16 -m10 -t2 http://198.18.0.2:8081/ >/dev/null 2>&1 || true
}

stop_server() { # TRANSPORT
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ "$1" == Sockets ]]; then ip -n "$server" addr del 198.18.0.2/24 dev vsos0; fi
}

# The server's CPU time so far, in clock ticks (utime + stime, proc(5)).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# Each server thread's CPU time so far: "tid ticks name" per line (name with spaces as _), from /proc/PID/task.
thread_ticks() {
  local t
  for t in /proc/"$pid"/task/*; do
    { read -r stat <"$t/stat" && read -r comm <"$t/comm"; } 2>/dev/null || continue
    stat="${stat##*) }"; set -- $stat
    echo "${t##*/} $((${12} + ${13})) ${comm//[ :]/_}"
  done
}

# measure TRANSPORT WORKLOAD COMMAND...: runs the load in the client namespace, records it with the server's CPU time.
measure() {
  local t="$1" w="$2" before after out threads_before threads_after
  shift 2
  if [[ -n "${VSO_WORKLOADS:-}" && " $VSO_WORKLOADS " != *" $w "* ]]; then return 0; fi
  before=$(cpu_ticks); threads_before=$(thread_ticks)
  out=$(ip netns exec "$client" "$@" 2>&1) || true
  after=$(cpu_ticks); threads_after=$(thread_ticks)
  record "$t" "$w" "$out" $((after - before)) "$threads_before" "$threads_after"
}

# record TRANSPORT WORKLOAD TOOL-OUTPUT CPU-TICKS THREADS-BEFORE THREADS-AFTER: appends
# "transport workload rps mbps p50_ms p99_ms cpu_s threads" to $results, threads being the busiest thread groups (threads
# of one name) as name:cores[xcount], cores = the group's CPU seconds per second of the workload.
record() {
  python3 - "$1" "$2" "$3" "$4" "$(getconf CLK_TCK)" "$5" "$6" "$secs" >>"$results" <<'PY'
import re, sys, collections
t, w, out = sys.argv[1], sys.argv[2], sys.argv[3]
hz = int(sys.argv[5])
cpu = int(sys.argv[4]) / hz
def threads(text):
    return {int(tid): (int(ticks), name) for tid, ticks, name in (l.split() for l in text.splitlines() if l.strip())}
before, after = threads(sys.argv[6]), threads(sys.argv[7])
groups = collections.defaultdict(lambda: [0, 0])
for tid, (ticks, name) in after.items():
    used = ticks - before.get(tid, (0, name))[0]
    if used > 0:
        groups[name][0] += used; groups[name][1] += 1
top = sorted(groups.items(), key=lambda g: -g[1][0])[:3]
busy = ",".join(f"{n}:{u / hz / float(sys.argv[8]):.2f}" + (f"x{c}" if c > 1 else "") for n, (u, c) in top) or "-"
def ms(v, u): return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
def mb(v, u): return float(v) * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576, "GB": 1073.741824}[u]
rps = mbps = p50 = p99 = float("nan")
m = re.search(r"Requests/sec:\s+([\d.]+)", out)
if m:  # wrk
    rps = float(m.group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out); mbps = mb(*m.groups()) if m else mbps
    m = re.search(r"\s50%\s+([\d.]+)(us|ms|s)\b", out); p50 = ms(*m.groups()) if m else p50
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out); p99 = ms(*m.groups()) if m else p99
    if "Socket errors" in out or "Non-2xx" in out:
        print(f"# {t} {w}: " + " ".join(l.strip() for l in out.splitlines() if "errors" in l or "Non-2xx" in l), file=sys.stderr)
else:  # h2load
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", out)
    if m: rps = float(m.group(1)); mbps = mb(m.group(2), m.group(3))
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    if m: p50 = ms(m.group(5), m.group(6))  # h2load prints no percentiles: mean
print(t, w, rps, mbps, p50, p99, cpu, busy)
PY
}

run_workloads() { # TRANSPORT
  local t="$1"
  measure "$t" plaintext-c1 wrk -t1 -c1 -d"${secs}s" --latency "$base/"
  measure "$t" plaintext-c64 wrk -t2 -c64 -d"${secs}s" --latency "$base/"
  measure "$t" plaintext-c256 wrk -t2 -c256 -d"${secs}s" --latency "$base/"
  measure "$t" close-c64 wrk -t2 -c64 -d"${secs}s" --latency -H "Connection: close" "$base/"
  measure "$t" pipelined16-c64 wrk -t2 -c64 -d"${secs}s" --latency -s "$here/pipeline.lua" "$base/"
  measure "$t" 1MiB-c8 wrk -t2 -c8 -d"${secs}s" --latency "$base/bytes/1048576"
  measure "$t" h2c-c16-m10 h2load -D "$secs" -c16 -m10 -t2 http://198.18.0.2:8081/
  if [[ -n "${VSO_WORKLOADS:-}" && " $VSO_WORKLOADS " != *" 1MiB-c8-loss1% "* ]]; then return 0; fi
  for chain in INPUT OUTPUT; do
    ip netns exec "$client" iptables -A "$chain" -p tcp -m statistic --mode random --probability 0.01 -j DROP
  done
  measure "$t" 1MiB-c8-loss1% wrk -t2 -c8 -d"${secs}s" --latency "$base/bytes/1048576"
  for chain in INPUT OUTPUT; do
    ip netns exec "$client" iptables -D "$chain" -p tcp -m statistic --mode random --probability 0.01 -j DROP
  done
}

for r in $(seq "$rounds"); do
  for t in ${VSO_TRANSPORTS:-Vso Sockets}; do
    echo "round $r/$rounds: $t" >&2
    start_server "$t"
    run_workloads "$t"
    stop_server "$t"
  done
done

python3 - "$results" "$rounds" "$secs" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, w, *v = line.split()
    rows[(t, w)].append([float(x) for x in v[:5]] + [v[5]])
def med(t, w, i):
    vals = [r[i] for r in rows.get((t, w), []) if r[i] == r[i]]
    return statistics.median(vals) if vals else float("nan")
secs = float(sys.argv[3])
def cost(t, w):
    # Server CPU seconds per 1,000 requests (ms/kreq) and per MiB sent, from the median run's figures.
    rps, mbps, cpu = med(t, w, 0), med(t, w, 1), med(t, w, 4)
    per_kreq = 1000 * cpu / (rps * secs) * 1000 if rps == rps and rps > 0 else float("nan")
    per_mib = 1000 * cpu / (mbps / 1.048576 * secs) if mbps == mbps and mbps > 0 else float("nan")
    return per_kreq, per_mib
def busiest(t, w):
    # The busiest threads of the round whose requests/s is nearest the median.
    runs = rows.get((t, w), [])
    if not runs: return "-"
    m = med(t, w, 0)
    run = min(runs, key=lambda r: abs(r[0] - m) if r[0] == r[0] else float("inf"))
    return run[5].replace(",", ", ")
order = ["plaintext-c1", "plaintext-c64", "plaintext-c256", "close-c64", "pipelined16-c64", "1MiB-c8", "h2c-c16-m10", "1MiB-c8-loss1%"]
print(f"median of {sys.argv[2]} rounds, {sys.argv[3]} s each, alternating Vso and Sockets; server CPU = utime + stime of the server process")
print("| workload | Vso req/s | Sockets req/s | Vso/Sockets | Vso MB/s | Sockets MB/s | Vso p50 / p99 ms | Sockets p50 / p99 ms | server CPU ms per 1k req, Vso / Sockets | server CPU ms per MiB, Vso / Sockets | busiest server threads (cores), Vso / Sockets |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
ours = sorted({t for (t, _) in rows if t != "Sockets"}, key=lambda t: (t != "Vso", t))
for w in order:
  if not any(k[1] == w for k in rows): continue
  for t in ours:
    v = [med(t, w, i) for i in range(4)]; s = [med("Sockets", w, i) for i in range(4)]
    ratio = v[0] / s[0] if s[0] else float("nan")
    (vk, vm), (sk, sm) = cost(t, w), cost("Sockets", w)
    name = w if t == "Vso" else f"{w} ({t})"
    print(f"| {name} | {v[0]:,.0f} | {s[0]:,.0f} | {ratio:.2f} | {v[1]:,.1f} | {s[1]:,.1f} | {v[2]:.2f} / {v[3]:.2f} | {s[2]:.2f} / {s[3]:.2f} | {vk:.1f} / {sk:.1f} | {vm:.1f} / {sm:.1f} | {busiest(t, w)} / {busiest('Sockets', w)} |")
print("(h2load prints no percentiles: its p50 column is the mean time per request; p99 n/a)")
print("(busiest server threads: the three thread names with the most CPU, as CPU seconds per second of load, xN = N threads of that name)")
PY
