#!/usr/bin/env python3
"""Idle keep-alive clients for scripts/bench.sh (a benchmark, not a test).

Opens COUNT connections to 127.0.0.1:PORT, sends one `GET PATH` on each (HTTP/1.1, keep-alive)
and reads its whole response, so that every connection is a real keep-alive client that has
been served once and is now idle between requests; then holds them all without a byte more
until it is told to stop. At most --window connections are connecting or waiting for their
response at once, so the proxy's waiting room never holds more than that.

Output, one line each, flushed (bench.sh waits for them in the log):
  ready open=N failed=F secs=S     every connection is idle (or failed) after S seconds
  status open=N closed=C (...)     on SIGUSR1: how many are still open, how many the peer closed
                                   (by EOF, by sending a byte, by a reset)
  stopped open=N closed=C          on SIGTERM/SIGINT, before it resets them all and exits
A connection the peer closes while idle (readable: EOF or an unexpected byte) is closed and
counted in `closed`. Everything is bounded: the setup phase gives up after --setup-timeout
seconds (the stragglers count as failed), and the hold ends after --hold seconds at most.
"""

import argparse
import errno
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

CONNECTING, SENDING, READING, IDLE = range(4)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def response_complete(buf):
    """True when buf holds a whole response head and its Content-Length body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(buf) >= end + 4 + length


class Conn:
    __slots__ = ("sock", "state", "out", "buf")

    def __init__(self, sock, request):
        self.sock = sock
        self.state = CONNECTING
        self.out = request
        self.buf = b""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=600.0)
    args = ap.parse_args()

    have = raise_nofile(args.count + 64)
    if have < args.count + 16:
        print(f"idle_conns: open-file limit {have} is too low for {args.count} connections",
              file=sys.stderr)
        return 2

    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               "User-Agent: bench-idle\r\n\r\n").encode()
    # Signals arrive through a pipe that the epoll loop watches, so no handler runs mid-call.
    rd, wr = os.pipe()
    os.set_blocking(wr, False)
    signal.set_wakeup_fd(wr)
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

    ep = select.epoll()
    ep.register(rd, select.EPOLLIN)
    conns = {}  # fd -> Conn
    started = opened = failed = closed = 0
    busy = 0  # connecting or waiting for the response
    ready = False
    t0 = time.monotonic()
    stop_at = t0 + args.setup_timeout

    def drop(fd, c, as_failure):
        nonlocal failed, closed, busy
        ep.unregister(fd)
        c.sock.close()
        del conns[fd]
        if c.state == IDLE:
            closed += 1
        else:
            busy -= 1
            if as_failure:
                failed += 1

    def open_more():
        nonlocal started, busy, failed
        while started < args.count and busy < args.window:
            started += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", args.port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
                continue
            c = Conn(s, request)
            conns[s.fileno()] = c
            busy += 1
            ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)

    why = {"eof": 0, "data": 0, "error": 0}  # how the peer ended idle connections

    def report(word):
        print(f"{word} open={opened - closed} closed={closed} (eof {why['eof']}, data "
              f"{why['data']}, error {why['error']})", flush=True)

    def reset_all():
        # A reset leaves no TIME_WAIT behind: the next rows' clients need those ports.
        linger = struct.pack("ii", 1, 0)
        for c in conns.values():
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                pass
            c.sock.close()
        conns.clear()

    hold_until = None
    open_more()
    while True:
        now = time.monotonic()
        if not ready and (opened + failed >= args.count or now >= stop_at):
            for fd, c in list(conns.items()):
                if c.state != IDLE:
                    drop(fd, c, True)
            ready = True
            hold_until = now + args.hold
            print(f"ready open={opened} failed={failed} secs={now - t0:.1f}", flush=True)
        deadline = stop_at if not ready else hold_until
        if ready and now >= hold_until:
            report("stopped")
            reset_all()
            return 0
        for fd, ev in ep.poll(max(0.0, deadline - now)):
            if fd == rd:
                for b in os.read(rd, 64):
                    if b == signal.SIGUSR1:
                        report("status")
                    elif b in (signal.SIGTERM, signal.SIGINT):
                        report("stopped")
                        reset_all()
                        return 0
                continue
            c = conns.get(fd)
            if c is None:
                continue
            if c.state == IDLE:
                # The peer closed it, reset it, or sent what it should not.
                try:
                    got = c.sock.recv(1)
                    why[("data" if got else "eof")] += 1
                except OSError:
                    why["error"] += 1
                drop(fd, c, False)
                continue
            try:
                if c.state == CONNECTING and ev & (select.EPOLLOUT | select.EPOLLERR):
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        drop(fd, c, True)
                        continue
                    c.state = SENDING
                if c.state == SENDING:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        c.state = READING
                        ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                    continue
                if c.state == READING and ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP):
                    data = c.sock.recv(65536)
                    if not data:
                        drop(fd, c, True)
                        continue
                    c.buf += data
                    if response_complete(c.buf):
                        c.state = IDLE
                        c.buf = b""
                        busy -= 1
                        opened += 1
                        ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                drop(fd, c, True)
        if not ready:
            open_more()


if __name__ == "__main__":
    sys.exit(main())
