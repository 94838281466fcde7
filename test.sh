#!/usr/bin/env bash
# The README's test command: installs what is missing, then builds and runs every test project of the solution in Release, writing one TRX file per project
# into TestResults/ (read by .ci/run for the totals). Extra arguments go to `dotnet test`,
# e.g. ./test.sh --filter "FullyQualifiedName~Wire".
set -euo pipefail
cd "$(dirname "$0")"
# System packages the tests use (tshark, iproute2, iptables, ethtool, curl, ping, wrk, h2load, hping3, scapy): installed if missing.
./scripts/prerequisites.sh
results="${VSO_TEST_RESULTS:-TestResults}"
rm -rf "$results"
mkdir -p "$results"
# -m:1: one test project at a time, so the attack tests (floods bounded in time, CPU-split with taskset) do not share
# the two cores with the other project's interop tests.
exec dotnet test Vso.Transport.sln -c Release -m:1 \
  --results-directory "$results" \
  --logger "trx" \
  --logger "console;verbosity=normal" \
  "$@"
