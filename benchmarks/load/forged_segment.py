#!/usr/bin/python3
"""Blind data injection (RFC 5961 §5.2) into an upload to POST /echo (Debian's python3-scapy; run it with /usr/bin/python3).

  forged_segment.py IFACE HOST PORT

Two uploads of BODY random bytes to http://HOST:PORT/echo over kernel sockets, each read back as it streams in (the
download). Halfway through each, once every byte sent is acknowledged (its echo came back), the client's last segment
is captured to learn SND.NXT, RCV.NXT, the MAC addresses and the timestamps, and a forged segment with INJECTED bytes
is sent at the server's RCV.NXT (= the client's SND.NXT) carrying the client's timestamps (so PAWS passes):

  control   SEG.ACK = the client's RCV.NXT (acceptable): the server must take the bytes, so the echo carries them in
            place of the client's own; this proves the forged segment reaches the server and is well formed.
  attack    SEG.ACK = RCV.NXT - 2^30, outside [SND.UNA - MAX.SND.WND, SND.NXT]: RFC 5961 §5.2 says discard the
            segment (and send a challenge ACK); the echo must be the body, byte for byte.

Then the rest of the body follows and the whole echo is read. Prints for each:
  "<name>=<intact|injected|other> echoed=N sha256=… body_sha256=…"
where intact means the echo equals the body, injected that it equals the body with the injected bytes in place.
"""
import hashlib
import os
import socket
import sys
import threading
import time

from scapy.all import IP, TCP, AsyncSniffer, Ether, Raw, conf, sendp  # noqa: E402

conf.verb = 0
BODY = 2 << 20
HALF = BODY // 2
INJECTED = b"FORGED-SEGMENT!!" * 64  # 1 KiB, well inside any receive window
TIMEOUT = 20.0


class EchoReader(threading.Thread):
    """Reads the HTTP response and keeps its body; waits let the writer pace itself on the echo."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.body = bytearray()
        self.error = None
        self.done = threading.Event()
        self.progress = threading.Condition()

    def run(self):
        try:
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed before the response headers: {raw!r}")
                raw += chunk
            head, rest = raw.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"response {head[:64]!r}")
            self._add(rest)
            while len(self.body) < BODY:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self._add(chunk)
        except OSError as e:
            self.error = e
        finally:
            self.done.set()
            with self.progress:
                self.progress.notify_all()

    def _add(self, data):
        with self.progress:
            self.body += data
            self.progress.notify_all()

    def wait_for(self, count):
        deadline = time.monotonic() + TIMEOUT
        with self.progress:
            while len(self.body) < count and not self.done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"echo stalled at {len(self.body)} of {count} bytes")
                self.progress.wait(left)
        if len(self.body) < count:
            raise ConnectionError(f"echo ended at {len(self.body)} of {count} bytes ({self.error})")


def last_client_segment(iface, host, port, sock, reader, trigger, echoed_after):
    """Sends one trigger byte and captures the client's segments until its echo is acknowledged."""
    local_ip, local_port = sock.getsockname()
    started = threading.Event()
    sniffer = AsyncSniffer(
        iface=iface,
        filter=f"tcp and src host {local_ip} and src port {local_port} and dst host {host} and dst port {port}",
        started_callback=started.set,
    )
    sniffer.start()
    if not started.wait(5):
        raise TimeoutError("the sniffer did not start")
    time.sleep(0.1)
    sock.sendall(trigger)
    reader.wait_for(echoed_after)
    time.sleep(0.3)  # the client's (delayed) ACK of the echoed byte goes out
    captured = sniffer.stop()
    if not captured:
        raise RuntimeError("no client segment captured")
    return captured[-1]


def forged(last, ack_offset):
    tcp = last[TCP]
    snd_nxt = (tcp.seq + len(bytes(tcp.payload))) % (1 << 32)
    timestamps = [o for o in tcp.options if o[0] == "Timestamp"]
    options = [("NOP", None), ("NOP", None), timestamps[0]] if timestamps else []
    return (
        Ether(src=last[Ether].src, dst=last[Ether].dst)
        / IP(src=last[IP].src, dst=last[IP].dst)
        / TCP(sport=tcp.sport, dport=tcp.dport, seq=snd_nxt, ack=(tcp.ack + ack_offset) % (1 << 32),
              flags="PA", window=tcp.window, options=options)
        / Raw(INJECTED)
    )


def run(name, iface, host, port, ack_offset):
    body = os.urandom(BODY)
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        reader = EchoReader(sock)
        reader.start()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % (host.encode(), BODY))
        sock.sendall(body[:HALF])
        reader.wait_for(HALF)
        last = last_client_segment(iface, host, port, sock, reader, body[HALF:HALF + 1], HALF + 1)
        sendp(forged(last, ack_offset), iface=iface)
        time.sleep(0.3)
        sock.sendall(body[HALF + 1:])
        reader.wait_for(BODY)
        reader.join(TIMEOUT)
    echoed = bytes(reader.body)
    at = HALF + 1
    if echoed == body:
        verdict = "intact"
    elif echoed == body[:at] + INJECTED + body[at + len(INJECTED):]:
        verdict = "injected"
    else:
        verdict = "other"
    print(f"{name}={verdict} echoed={len(echoed)} sha256={hashlib.sha256(echoed).hexdigest()} "
          f"body_sha256={hashlib.sha256(body).hexdigest()}", flush=True)


def main():
    iface, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for name, offset in (("control", 0), ("attack", -(1 << 30))):
        try:
            run(name, iface, host, port, offset)
        except Exception as e:  # report and go on: the other case still tells something
            print(f"{name}=error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
