"""A trial's checkpoint state as bytes, for user code: what ``trial.save_checkpoint`` keeps and
``trial.load_checkpoint`` gives back, for entry points run by a worker and for trials asked for
from a notebook alike.

``torch.save`` writes it; ``torch.load(weights_only=True)`` reads it: tensors, ``state_dict()``s,
numbers, strings, and lists and dicts of them. The bytes come over the network, so nothing else
is ever unpickled. torch is imported on first use, so a notebook that never checkpoints never
pays for it.
"""

from __future__ import annotations

import io
from typing import Any


def encode(state: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def decode(data: bytes, device: str = "cpu") -> Any:
    import torch

    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
