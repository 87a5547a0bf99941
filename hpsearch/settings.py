"""All configuration, read once from the environment (``HPSEARCH_*``) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPSEARCH_", extra="ignore")

    database_url: str = "sqlite:///hpsearch.db"
    host: str = "127.0.0.1"
    port: int = 8765
    # How long a claimed trial stays a worker's without a heartbeat or report.
    lease_seconds: float = 60.0
    # Worker requests (claims, reports, heartbeats, completions) one server process serves at
    # once, on threads of their own; the others wait their turn, cheaply. A few at a time get
    # more done than many, which contend for the GIL while holding row locks (a study's row,
    # as its trials are claimed and completed). Pages and the rest of the API have threads of
    # their own. 0: on the event loop itself, which suits SQLite: one writer at a time,
    # statements run inside this process, so a trip to a thread and back costs more than
    # threads overlap. Unset: 0 on SQLite, 2 elsewhere: each hot request is one or two
    # statements, so two threads keep the GIL busy while one waits on the database, and more
    # cost more CPU per request than they overlap (docs/performance.md). A database far
    # away (long round trips) may want more. Give SQLite threads when other processes write
    # to its file often (a writer may then wait for them, up to 30 s).
    queue_threads: int | None = None
    # How often one server process looks for expired leases and queued test evaluations (and
    # refreshes a claiming worker's row, at a tenth of this rate) rather than on every claim.
    probe_seconds: float = 0.5
    # How long a worker may hold back per-epoch reports, to send them together (with the
    # next report or with the completion): epochs faster than this cost one request, not
    # one each. 0: every report at once. Studies with a pruner always get 0 (it judges each
    # step as it comes).
    report_interval_s: float = 1.0
    # Where checkpoints and trial logs live (hpsearch/artifact_store.py): "folder", files
    # under artifact_dir, shared by the server processes of one host (or of several, on a
    # shared volume); "database", tables in the server's PostgreSQL, shared by every server
    # process on every host with nothing to mount.
    artifact_backend: Literal["folder", "database"] = "folder"
    artifact_dir: Path = Path("hpsearch-artifacts")
    # The largest checkpoint a worker may upload (bytes); a larger one is refused with 413.
    max_artifact_bytes: int = 4 * 1024**3
    # The largest request body other than a checkpoint upload (bytes); larger gets 413.
    max_request_bytes: int = 1024**2
    # How long a token check is cached: a revoked token works for up to this long.
    auth_cache_seconds: float = 5.0
    # Marks the session cookie Secure; set when the server is reached over HTTPS.
    secure_cookies: bool = False
    # One line per request on the server's stderr (method, path, status, duration);
    # `hpsearch server --no-access-log` turns it off.
    access_log: bool = True
    # SQL echo, for debugging the claim path.
    echo_sql: bool = False
