"""What handlers receive through ``Depends``: the store and the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hpsearch.artifacts import ArtifactStore
from hpsearch.settings import Settings
from hpsearch.store import Store


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_artifacts(request: Request) -> ArtifactStore:
    settings = get_settings(request)
    return ArtifactStore(settings.artifact_dir, settings.max_artifact_bytes)


StoreDep = Annotated[Store, Depends(get_store)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
