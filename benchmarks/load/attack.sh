#!/usr/bin/env bash
# Attacks on the HelloServer sample, on the Vso transport (AF_PACKET) and on Kestrel's Sockets transport (the
# kernel's TCP) in the same namespaces, one after the other, printing one table:
#   flood       hping3 -S --flood --rand-source at port 8080 for FLOOD seconds; meanwhile wrk keeps 8 keep-alive
#               connections busy (opened before the flood) and a probe opens a new connection every 0.25 s
#   slow flood  600 SYNs from absent hosts on the subnet (198.18.0.100-249), then 5 a second (scapy), same probe
#   idle horde  10,000 keep-alive connections, one request each, then idle
#   slowloris   2,000 more connections trickling request headers until Kestrel times them out (30 s)
# Reported: new connections that succeeded (%), keep-alive requests/s during the flood relative to without it, seconds
# until a new client is answered after the flood, server log growth, server RSS (MiB) at each step, and the
# server's CPU seconds (utime+stime) over the whole run.
# Needs root, hping3, python3-scapy, wrk. Usage: benchmarks/load/attack.sh [FLOOD_SECONDS=15]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../netns.sh"
flood="${1:-15}"

for tool in wrk hping3 ethtool curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk hping3 python3-scapy ethtool curl)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import scapy' 2>/dev/null || { echo "missing python3-scapy (apt-get install python3-scapy)" >&2; exit 1; }

results="$(mktemp /tmp/vso-attack-XXXXXX)"
trap 'vso_cleanup; rm -f "$results"' EXIT INT TERM
vso_cleanup_stale

dotnet build -c Release -v q -nologo "$root/samples/Vso.Samples.HelloServer" >/dev/null
sample_dir="$root/samples/Vso.Samples.HelloServer/bin/Release/net10.0"

client="vso-ac-$$-1"; server="vso-as-$$-1"
vso_ns_add ac; vso_ns_add as
vso_veth "$client" vsoc0 "$server" vsos0
ip -n "$client" addr add 198.18.0.1/24 dev vsoc0
base="http://198.18.0.2:8080"
clients=(ip netns exec "$client" python3 "$here/attack_clients.py")

pid=""
log=""
start_server() { # TRANSPORT
  local t="$1"
  log="/tmp/vso-attack-$t.log"
  if [[ "$t" == Sockets ]]; then ip -n "$server" addr add 198.18.0.2/24 dev vsos0; fi
  (cd "$sample_dir" && exec ip netns exec "$server" env Transport="$t" Vso__Backend=AfPacket Vso__Interface=vsos0 \
     Vso__Address=198.18.0.2/24 Logging__LogLevel__Microsoft.Hosting.Lifetime=Warning \
     dotnet Vso.Samples.HelloServer.dll --urls "$base" >"$log" 2>&1) &
  pid=$!
  VSO_PIDS+=("$pid")
  vso_wait_http "$client" "$base/"
  ip netns exec "$client" wrk -t1 -c8 -d2s "$base/" >/dev/null 2>&1 || true   # warm-up, not recorded
}

stop_server() { # TRANSPORT
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ "$1" == Sockets ]]; then ip -n "$server" addr del 198.18.0.2/24 dev vsos0; fi
}

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$pid/stat"; }
log_bytes() { stat -c %s "$log"; }
rps() { sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$1"; }
put() { echo "$1 $2 ${3:-n/a}" >>"$results"; } # TRANSPORT KEY VALUE

# flood_case TRANSPORT NAME COMMAND...: runs COMMAND as the attack for $flood seconds with wrk and the probe beside it.
flood_case() {
  local t="$1" name="$2"; shift 2
  local before wrk_out probe_out recovered
  before=$(log_bytes)
  wrk_out=$(mktemp); probe_out=$(mktemp)
  ip netns exec "$client" wrk -t1 -c8 -d"$((flood + 1))s" "$base/" >"$wrk_out" 2>&1 &
  local wrk_pid=$!
  sleep 0.5
  "$@" >/dev/null 2>&1 &
  local attack_pid=$!
  "${clients[@]}" probe 198.18.0.2 8080 "$((flood - 1))" 0.25 >"$probe_out" &
  local probe_pid=$!
  wait "$attack_pid" || true
  recovered=$("${clients[@]}" recover 198.18.0.2 8080 30 | sed -n 's/recovered_after=//p')
  wait "$probe_pid" "$wrk_pid" || true
  local attempts ok
  attempts=$(sed -n 's/attempts=\([0-9]*\) .*/\1/p' "$probe_out"); ok=$(sed -n 's/.* ok=\([0-9]*\)/\1/p' "$probe_out")
  put "$t" "$name-new" "${ok:-0}/${attempts:-0}"
  put "$t" "$name-rps" "$(rps "$(cat "$wrk_out")")"
  put "$t" "$name-recover" "$recovered"
  put "$t" "$name-log" "$(( $(log_bytes) - before ))"
  rm -f "$wrk_out" "$probe_out"
}

for t in Vso Sockets; do
  echo "$t: baseline" >&2
  start_server "$t"
  put "$t" rss-start "$(rss_mib)"
  put "$t" baseline-rps "$(rps "$(ip netns exec "$client" wrk -t1 -c8 -d5s "$base/" 2>&1)")"

  echo "$t: SYN flood, $flood s" >&2
  flood_case "$t" flood timeout "$flood" ip netns exec "$client" hping3 -q -S --flood --rand-source -p 8080 198.18.0.2
  echo "$t: slow flood of spoofed SYNs, $flood s" >&2
  flood_case "$t" slow ip netns exec "$client" timeout "$((flood + 5))" /usr/bin/python3 "$here/spoofed_syns.py" vsoc0 198.18.0.2 8080 600 5 "$flood"

  echo "$t: 10,000 idle connections, then 2,000 slowloris" >&2
  sleep 2
  put "$t" rss-base "$(rss_mib)"
  horde_out=$(mktemp)
  "${clients[@]}" horde 198.18.0.2 8080 10000 75 >"$horde_out" &
  horde_pid=$!
  for _ in $(seq 600); do grep -q ready "$horde_out" && break; sleep 0.1; done
  put "$t" horde-ready "$(sed -n 's/ready=\([0-9]*\).*/\1/p' "$horde_out")"
  put "$t" rss-idle "$(rss_mib)"
  loris_out=$(mktemp)
  "${clients[@]}" slowloris 198.18.0.2 8080 2000 45 >"$loris_out" &
  loris_pid=$!
  sleep 20
  put "$t" rss-loris "$(rss_mib)"
  wait "$loris_pid" || true
  put "$t" loris-closed "$(sed -n 's/server_closed=\([0-9]*\).*/\1/p' "$loris_out")"
  wait "$horde_pid" || true
  sleep 5
  put "$t" rss-after "$(rss_mib)"
  put "$t" cpu "$(cpu_s)"
  rm -f "$horde_out" "$loris_out"
  stop_server "$t"
done

cp "$results" /tmp/vso-attack-raw.txt
python3 - "$results" "$flood" <<'PY'
import sys
v = {}
for line in open(sys.argv[1]):
    t, k, *val = line.split(maxsplit=2)
    v[(t, k)] = val[0].strip() if val else "n/a"
def g(t, k): return v.get((t, k), "n/a")
def ratio(t, k):
    try: return f"{float(g(t, k)) / float(g(t, 'baseline-rps')):.2f}"
    except ValueError: return "n/a"
def pct(t, k):
    try:
        ok, n = map(int, g(t, k).split("/")); return f"{100 * ok / n:.0f}% ({ok}/{n})"
    except (ValueError, ZeroDivisionError): return "n/a"
def kib(t, k):
    try: return f"{int(g(t, k)) / 1024:.0f} KiB"
    except ValueError: return "n/a"
def growth(t, k):
    try: return f"+{int(g(t, k)) - int(g(t, 'rss-base'))}"
    except ValueError: return "n/a"
rows = [
    ("flood: new connections ok", lambda t: pct(t, "flood-new")),
    ("flood: keep-alive req/s vs none", lambda t: ratio(t, "flood-rps")),
    ("flood: s until answered after", lambda t: g(t, "flood-recover")),
    ("flood: log growth", lambda t: kib(t, "flood-log")),
    ("slow flood: new connections ok", lambda t: pct(t, "slow-new")),
    ("slow flood: keep-alive req/s vs none", lambda t: ratio(t, "slow-rps")),
    ("slow flood: s until answered after", lambda t: g(t, "slow-recover")),
    ("slow flood: log growth", lambda t: kib(t, "slow-log")),
    ("RSS MiB before the horde", lambda t: g(t, "rss-base")),
    ("10,000 idle: answered / RSS growth MiB", lambda t: f"{g(t, 'horde-ready')} / {growth(t, 'rss-idle')}"),
    ("+2,000 slowloris: RSS growth MiB", lambda t: growth(t, "rss-loris")),
    ("slowloris closed by the server", lambda t: g(t, "loris-closed")),
    ("after all closed: RSS growth MiB", lambda t: growth(t, "rss-after")),
    ("server CPU s, whole run", lambda t: g(t, "cpu")),
]
print(f"attacks of {sys.argv[2]} s; baseline keep-alive req/s (wrk -t1 -c8): Vso {g('Vso', 'baseline-rps')}, Sockets {g('Sockets', 'baseline-rps')}")
print("| measure | Vso | Sockets |")
print("|---|---:|---:|")
for name, f in rows:
    print(f"| {name} | {f('Vso')} | {f('Sockets')} |")
PY
