from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(store: StoreDep) -> dict[str, str]:
    with store.db.read() as s:
        s.execute(text("SELECT 1"))
    return {"status": "ok", "database": store.db.engine.dialect.name}
