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
    # SQL echo, for debugging the claim path.
    echo_sql: bool = False
