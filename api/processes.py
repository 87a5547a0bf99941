"""Several server processes on one port (``hpsearch server --workers N``).

uvicorn's own ``--workers`` shares one listening socket among its processes: every process
is woken by a new connection, the first to run accepts it, and uvloop accepts every
connection waiting at once. Workers hold keep-alive connections opened together when a
fleet starts, so they land on one process (measured: 32 of 32) while the others idle.

Here each process listens on a socket of its own, bound with ``SO_REUSEPORT`` to the same
address: Linux spreads new connections over the sockets by a hash of their addresses, so
however the processes are scheduled, connections divide evenly between them. The sockets
are opened here, in the supervisor, and each outlives its process: connections that arrive
while a process is being replaced wait in its socket's backlog for the replacement.
Elsewhere (no ``SO_REUSEPORT``, or one that does not balance) the processes share one
socket, as uvicorn's do. The processes count their metrics into files of a directory made
here, which a scrape of any of them sums (api/metrics.py).
"""

from __future__ import annotations

import errno
import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from api.metrics import shared_between_processes

# Linux balances a SO_REUSEPORT group; other systems may hand every connection to one socket.
BALANCES = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")

BACKLOG = 2048  # uvicorn's default


def listeners(host: str, port: int, processes: int) -> list[socket.socket]:
    """One listening socket per process where the kernel balances them, else one shared.

    Raises OSError (EADDRINUSE) when anything already listens on the port, even another
    ``SO_REUSEPORT`` group, which would otherwise quietly share our connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _refuse_taken(family, host, port)
    count = processes if BALANCES else 1
    return [_listener(family, host, port, reuse_port=BALANCES) for _ in range(count)]


def _refuse_taken(family: socket.AddressFamily, host: str, port: int) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _listener(
    family: socket.AddressFamily, host: str, port: int, *, reuse_port: bool
) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections accepted from a
    # socket whose proto says TCP, and without it each keep-alive request waits ~40 ms
    # for a delayed ACK (uvicorn#3149).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    # Listening from here on, before any process serves it: a connection that comes while
    # the processes start waits in the backlog rather than being refused.
    sock.listen(BACKLOG)
    return sock


def serve(config: uvicorn.Config, processes: int) -> int:
    """Runs ``processes`` servers until SIGINT or SIGTERM, replacing any that dies.

    Returns 0, or 1 when a process failed to start (the app, or the database it checks at
    startup, is broken: every replacement would fail alike)."""
    try:
        sockets = listeners(config.host, config.port, processes)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        _say(f"error: {config.host}:{config.port} is already in use")
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    spawn = multiprocessing.get_context("spawn")

    def start(i: int) -> BaseProcess:
        process = spawn.Process(
            target=_run, args=(config, sockets[i % len(sockets)]), name=f"hpsearch-server-{i}"
        )
        process.start()
        return process

    with shared_between_processes():
        return _supervise(start, processes, stop, sockets)


def _supervise(
    start: Callable[[int], BaseProcess],
    processes: int,
    stop: threading.Event,
    sockets: list[socket.socket],
) -> int:
    children = [start(i) for i in range(processes)]
    failed = False
    while not stop.wait(0.5):
        for i, child in enumerate(children):
            if child.is_alive():
                continue
            if child.exitcode == STARTUP_FAILURE:
                _say(f"server process {child.pid} failed to start; stopping")
                failed = True
                stop.set()
                break
            _say(f"server process {child.pid} ended (exit {child.exitcode}); starting another")
            children[i] = start(i)
    for child in children:
        child.terminate()  # SIGTERM: uvicorn finishes the requests in flight
    for child in children:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
    for sock in sockets:
        sock.close()
    return 1 if failed else 0


def _run(config: uvicorn.Config, sock: socket.socket) -> None:
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
