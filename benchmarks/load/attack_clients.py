#!/usr/bin/env python3
"""Clients for benchmarks/load/attack.sh and the attack interop tests (standard library only).

  probe HOST PORT SECONDS INTERVAL   a new connection every INTERVAL s (GET /, Connection: close, 3 s limit);
                                     prints "attempts=N ok=N"
  recover HOST PORT LIMIT            seconds until a new connection first gets a response (polls every 0.1 s
                                     with 1 s attempts); prints "recovered_after=S" or "recovered_after=inf"
  horde HOST PORT N HOLD             N keep-alive connections, one GET each, then idle for HOLD s; prints
                                     "ready=N" once all answered (or gave up), then "closed"
  slowloris HOST PORT N SECONDS      N connections sending a request header one line every 5 s; prints
                                     "server_closed=N of N" after SECONDS or once every one was closed
"""
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def one_request(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def probe(host, port, seconds, interval):
    attempts = ok = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        attempts += 1
        ok += one_request(host, port, 3.0)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    print(f"attempts={attempts} ok={ok}", flush=True)


def recover(host, port, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if one_request(host, port, 1.0):
            print(f"recovered_after={time.monotonic() - start:.2f}", flush=True)
            return
        time.sleep(0.1)
    print("recovered_after=inf", flush=True)


def open_many(host, port, n, first_bytes):
    """Non-blocking connects of n sockets; returns the connected ones (first_bytes sent on each)."""
    sel = selectors.DefaultSelector()
    pending = 0
    connected = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        sel.register(s, selectors.EVENT_WRITE)
        pending += 1
        if pending >= 256:  # keep the SYN burst modest: this measures memory, not SYN floods
            pending -= drain_connects(sel, connected, first_bytes, 0.05)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        pending -= drain_connects(sel, connected, first_bytes, 0.2)
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    sel.close()
    return connected


def drain_connects(sel, connected, first_bytes, timeout):
    done = 0
    for key, _ in sel.select(timeout):
        s = key.fileobj
        sel.unregister(s)
        done += 1
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            try:
                s.send(first_bytes)
                connected.append(s)
                continue
            except OSError:
                pass
        s.close()
    return done


def horde(host, port, n, hold):
    raise_fd_limit()
    socks = open_many(host, port, n, REQUEST)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    answered = 0
    deadline = time.monotonic() + 30
    while answered < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            sel.unregister(key.fileobj)
            answered += bool(data)
    print(f"ready={answered} of {n}", flush=True)
    time.sleep(hold)
    for s in socks:
        s.close()
    print("closed", flush=True)


def slowloris(host, port, n, seconds):
    raise_fd_limit()
    socks = open_many(host, port, n, b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\n")
    print(f"open={len(socks)} of {n}", flush=True)
    alive = set(socks)
    closed = 0
    end = time.monotonic() + seconds
    line = 0
    while alive and time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        line += 1
        for s in list(alive):
            try:
                s.send(b"X-Slow-%d: x\r\n" % line)
                # A closed connection shows as readable EOF (Kestrel answers 408 or just closes).
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                raise ConnectionResetError
            except OSError:
                alive.discard(s)
                s.close()
                closed += 1
    for s in alive:
        s.close()
    print(f"server_closed={closed} of {len(socks)}", flush=True)


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "probe":
        probe(host, port, float(sys.argv[4]), float(sys.argv[5]))
    elif mode == "recover":
        recover(host, port, float(sys.argv[4]))
    elif mode == "horde":
        horde(host, port, int(sys.argv[4]), float(sys.argv[5]))
    elif mode == "slowloris":
        slowloris(host, port, int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
