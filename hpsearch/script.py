"""For a training script that the ``command`` trainer runs: its parameters, its reports, where
to keep its checkpoint, and whether to stop. Standard library only.

A script needs none of it (a plain ``print(json.dumps({"step": 3, "dev_accuracy": 0.91}))``
is a report), but with it a script stops cleanly when its trial is pruned or stopped::

    from hpsearch import script

    p = script.params({"lr": 0.01})          # the defaults are used outside hpsearch
    for epoch in range(1, epochs + 1):
        ...
        if script.report(epoch, dev_accuracy=acc):
            break                            # pruned, stopped, or the worker is shutting down

Outside hpsearch (no ``HPSEARCH_TRIAL_ID`` in the environment) the same calls print their
reports and never ask to stop, so the script runs as before.

How a stop arrives: the worker sends SIGTERM to the script's process group, and SIGKILL
``task.grace_seconds`` later. Once a script has called :func:`report` or :func:`should_stop`
under hpsearch, SIGTERM no longer ends it at once: it makes the next :func:`report` return
True, so the script can save its checkpoint and return within the grace period.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

_stop_requested = False
_handler_installed = False


def running() -> bool:
    """Whether this process is a trial that an hpsearch worker started."""
    return "HPSEARCH_TRIAL_ID" in os.environ


def params(defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trial's parameter values (fixed ones included) over ``defaults``."""
    given = json.loads(os.environ.get("HPSEARCH_PARAMS") or "{}")
    return {**(defaults or {}), **given}


def checkpoint_dir() -> Path | None:
    """The folder whose files are the trial's checkpoint: uploaded after reports, restored
    before a resumed attempt starts. None outside hpsearch."""
    folder = os.environ.get("HPSEARCH_CHECKPOINT_DIR")
    return Path(folder) if folder else None


def report(step: int, **metrics: float) -> bool:
    """Reports one step's metrics (a JSON line on stdout); True: stop now (the trial was
    pruned or stopped, or the worker is shutting down)."""
    _print({"step": int(step), **{k: float(v) for k, v in metrics.items()}})
    return should_stop()


def final(**metrics: float) -> None:
    """Final metrics beyond the last step's (e.g. ``latency_ms`` measured once at the end)."""
    _print({"final": True, **{k: float(v) for k, v in metrics.items()}})


def should_stop() -> bool:
    """Whether the worker asked this trial to stop (without reporting anything)."""
    _listen()
    return _stop_requested


def _print(line: dict[str, Any]) -> None:
    # NaN and infinity are written as JSON's common extension (NaN, Infinity): a diverged
    # run is an outcome to record, not an error.
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _listen() -> None:
    """Turns SIGTERM into a stop request, under hpsearch only, unless the script already
    handles SIGTERM itself."""
    global _handler_installed
    if _handler_installed or not running():
        return
    _handler_installed = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(_signum: int, _frame: object) -> None:
    global _stop_requested
    _stop_requested = True
