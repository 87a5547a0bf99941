"""A throwaway PostgreSQL 15 cluster for the test run (and the queue benchmark).

Debian's server binaries (``/usr/lib/postgresql/15/bin``, installed by
``scripts/system-packages.sh``) run a private cluster in a temporary directory: its own data
directory, its own unix socket directory and a free TCP port on 127.0.0.1, so it never meets
a PostgreSQL the machine already runs. ``initdb`` refuses to run as root, so when the tests run
as root the cluster runs as an unprivileged system user (``nobody``) that owns the directory.

The cluster starts once per test session; each test gets a fresh database in it, dropped after.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("HPSEARCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Set to run the suite where PostgreSQL cannot be installed: postgres tests then skip, loudly.
SKIP_ENV = "HPSEARCH_SKIP_POSTGRES"
# Crash safety buys nothing for a database deleted at the end of the run; tests go faster.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresCluster:
    """One private PostgreSQL server: ``start()``, databases by name, ``stop()`` removes it."""

    def __init__(
        self,
        durable: bool = False,
        max_connections: int = 300,
        run_as: str = "nobody",
        settings: tuple[str, ...] = (),
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.settings = settings
        self.user = run_as if os.geteuid() == 0 else None
        self.superuser = "postgres"

    def _run(self, *args: str) -> None:
        cmd = [*args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> PostgresCluster:
        if not (PG_BIN / "initdb").exists():
            raise FileNotFoundError(
                f"{PG_BIN / 'initdb'} is missing: run scripts/system-packages.sh "
                "(installs Debian's postgresql-15)"
            )
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.root}",
            f"-c max_connections={self.max_connections}",
            *(f"-c {s}" for s in ([] if self.durable else FAST_SETTINGS)),
            *(f"-c {s}" for s in self.settings),
        ]
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={self.superuser} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); returns its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self._admin(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    if os.environ.get(SKIP_ENV):
        pytest.skip(f"{SKIP_ENV} is set: PostgreSQL tests skipped")
    cluster = PostgresCluster()
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _migrated_template(postgres_cluster: PostgresCluster) -> str:
    """A database at the head revision, copied for each test that needs a migrated one."""
    from hpsearch.store.db import upgrade

    name = "hpsearch_template"
    upgrade(postgres_cluster.create_database(name))
    return name


@pytest.fixture
def make_postgres_database(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    """Factory: ``make(migrated=True)`` -> the URL of a fresh database, dropped after the test."""
    made: list[str] = []

    def make(migrated: bool = True) -> str:
        template = request.getfixturevalue("_migrated_template") if migrated else None
        url = postgres_cluster.create_database(template=template)
        made.append(url.rsplit("/", 1)[1])
        return url

    yield make
    for name in made:
        postgres_cluster.drop_database(name)


@pytest.fixture
def postgres_url(make_postgres_database: Callable[..., str]) -> str:
    """A fresh, migrated PostgreSQL database for one test."""
    return make_postgres_database()
