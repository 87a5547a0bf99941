"""``hpsearch server --workers 2``: two uvicorn processes on one port. Keep-alive connections
opened together spread over both, a process that dies is replaced without refusing a
connection, a second server on the same port is refused, and stopping the server stops them
all. Linux only: the connections' owners are read from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from api.processes import BALANCES
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.skipif(not BALANCES, reason="connections balance on Linux only")

CONNECTIONS = 16


def _server_children(parent: int) -> list[int]:
    """The server processes (multiprocessing's spawned children, not its resource tracker)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == parent and b"multiprocessing.spawn" in cmdline:
            children.append(int(entry.name))
    return sorted(children)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health").status_code == 200
    except httpx.TransportError:
        return False


def _two_children(parent: int, without: int | None = None) -> list[int] | None:
    children = _server_children(parent)
    return children if len(children) == 2 and without not in children else None


def _established_on(port: int) -> set[int]:
    """The socket inodes of this machine's established TCP connections accepted on ``port``."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _connections_by_process(pids: list[int], port: int) -> Counter[int]:
    established = _established_on(port)
    counts: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in established:
                counts[pid] += 1
    return counts


def _open_connections(port: int) -> list[socket.socket]:
    """``CONNECTIONS`` keep-alive connections opened at once, as a fleet of workers starting
    together opens them, then one request answered on each."""
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
    for connection in connections:
        connection.settimeout(60)
        connection.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n\r\n")
    for connection in connections:
        assert _response(connection).startswith(b"HTTP/1.1 200 ")
    return connections


def _response(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return head


@pytest.mark.slow
def test_two_server_processes_share_the_connections_and_replace_one_that_dies(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'hpsearch.db'}",
        "HPSEARCH_HOST": "127.0.0.1",
        "HPSEARCH_PORT": str(port),
    }
    command = [sys.executable, "-m", "hpsearch.cli", "server", "--workers", "2"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    connections: list[socket.socket] = []
    try:
        first = wait_for(lambda: _two_children(server.pid), 60, "two server processes")
        wait_for(lambda: _answers(url), 60, "the server to answer")
        connections = _open_connections(port)
        spread = _connections_by_process(first, port)
        # With one socket shared, uvloop's accept loop hands a burst of connections to one
        # process: 16 of 16. Hashed over two sockets, all 16 on one has odds of 2 in 65 536.
        assert sum(spread.values()) == CONNECTIONS
        assert set(spread) == set(first), spread

        # A second server on the port is refused, not added to the first one's group.
        taken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert taken.returncode == 1
        assert "already in use" in taken.stderr

        os.kill(first[0], signal.SIGKILL)
        replaced = wait_for(
            lambda: _two_children(server.pid, without=first[0]),
            60,
            "the dead process to be replaced",
        )
        for connection in connections:
            connection.close()
        # Connections hashed to the dead process's socket wait for its replacement: every
        # one is answered, none refused.
        connections = _open_connections(port)
        spread = _connections_by_process(replaced, port)
        assert sum(spread.values()) == CONNECTIONS
        assert set(spread) == set(replaced), spread

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        for pid in replaced:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{pid} still runs"
    finally:
        for connection in connections:
            connection.close()
        if server.poll() is None:
            server.kill()
            server.wait()
        print(log.read_text())


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
