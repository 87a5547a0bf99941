"""Errors of the core that a user can act on; the API maps each to one HTTP status."""

from __future__ import annotations


class HpsearchError(Exception):
    """Base class. ``code`` is a stable machine-readable name."""

    code = "error"


class NotFound(HpsearchError):
    code = "not_found"


class InvalidState(HpsearchError):
    """The request does not fit the current state (e.g. resume a completed study)."""

    code = "invalid_state"


class LeaseLost(HpsearchError):
    """A worker reports on a trial it no longer holds: its lease expired and it was re-queued."""

    code = "lease_lost"


class InvalidInput(HpsearchError):
    """Input that passed the schema but not the study's rules (e.g. params outside the space)."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
