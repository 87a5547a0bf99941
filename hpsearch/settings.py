"""All configuration, read once from the environment (``HPSEARCH_*``) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPSEARCH_", extra="ignore")

    database_url: str = "sqlite:///hpsearch.db"
    host: str = "127.0.0.1"
    port: int = 8765
    # How long a claimed trial stays a worker's without a heartbeat or report.
    lease_seconds: float = 60.0
    artifact_dir: Path = Path("hpsearch-artifacts")
    # The largest checkpoint a worker may upload (bytes); a larger one is refused with 413.
    max_artifact_bytes: int = 4 * 1024**3
    # The largest request body other than a checkpoint upload (bytes); larger gets 413.
    max_request_bytes: int = 1024**2
    # How long a token check is cached: a revoked token works for up to this long.
    auth_cache_seconds: float = 5.0
    # Marks the session cookie Secure; set when the server is reached over HTTPS.
    secure_cookies: bool = False
    # SQL echo, for debugging the claim path.
    echo_sql: bool = False
