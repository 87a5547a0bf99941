"""The worker's code that the notebook's study handle uses, found without importing it.

A trial run from a notebook checkpoints in the worker's format (torch), and
``Study.load_model`` rebuilds a built-in trainer's model with the worker's model code. The
core imports neither (it installs and runs without torch): the worker package declares them
as entry points of the group ``hpsearch.worker_code`` in ``pyproject.toml``, the one place
that wires the two together, and they are loaded on first use. A server-only install
declares them too (entry points come with the package, not with an extra) but lacks torch:
asking for one then says which install brings it, as when none is declared.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from hpsearch.errors import HpsearchError

GROUP = "hpsearch.worker_code"


class WorkerCodeMissing(HpsearchError):
    """The worker's packages, which a checkpoint or a model needs, are not installed."""

    code = "worker_code_missing"


@cache
def worker_code(name: str) -> Any:
    """The object the entry point ``name`` of :data:`GROUP` names, loaded once."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise WorkerCodeMissing(
            f"{name} is the worker's code, which is not installed here: "
            "pip install 'hpsearch[worker]' (in a checkout installed before the entry point "
            f"group {GROUP} was declared, install it again: scripts/setup.sh)"
        )
    try:
        return next(iter(found)).load()
    except ImportError as e:  # declared, but the worker's packages (torch) are missing
        raise WorkerCodeMissing(
            f"{name} is the worker's code, which needs {e.name or e}, not installed here: "
            "pip install 'hpsearch[worker]'"
        ) from e


class CheckpointState:
    """Checkpoint state to bytes and back in the worker's format (entry point
    ``checkpoint_state``), found when a trial first checkpoints: a notebook that never
    checkpoints never loads torch."""

    def encode(self, state: Any) -> bytes:
        data: bytes = worker_code("checkpoint_state").encode(state)
        return data

    def decode(self, data: bytes, device: str = "cpu") -> Any:
        return worker_code("checkpoint_state").decode(data, device)


def rebuild_model(params: Any, task: Any, data: bytes, device: str = "cpu") -> Any:
    """A built-in trainer's ``torch.nn.Module`` (entry point ``rebuild_model``)."""
    return worker_code("rebuild_model")(params, task, data, device)
