"""A built-in trainer's trained model, rebuilt from one of its trial's checkpoints.

``Study.load_model(trial)`` calls it (found through an entry point, hpsearch/worker_code.py),
as does anyone holding a checkpoint downloaded with ``hpsearch best STUDY --download model.pt``::

    from workers.training.rebuild import rebuild_model
    model = rebuild_model(trial.params, study.spec["task"], open("model.pt", "rb").read())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from hpsearch.space import ParamValue
from hpsearch.spec import TaskSpec
from workers.training.checkpoint import load_model, unpack
from workers.training.datasets import load_dataset
from workers.training.hyperparameters import resolve
from workers.training.models import build_model
from workers.training.splits import make_splits


def rebuild_model(
    params: Mapping[str, ParamValue], task: Mapping[str, Any], data: bytes, device: str = "cpu"
) -> nn.Module:
    """The ``torch.nn.Module`` of a built-in trainer's trial (its ``params``, its study's
    ``task``) with the weights of checkpoint ``data``, on ``device``, in eval mode.

    The dataset is read to know the model's input shape and class count, as training did."""
    spec = TaskSpec.model_validate(dict(task))
    hp = resolve(spec.trainer, spec.fixed, params)
    splits = make_splits(
        load_dataset(spec.dataset, spec.data_path), spec.split, spec.normalize, with_test=False
    )
    model = build_model(spec.trainer, hp, splits.input_shape, splits.n_classes)
    load_model(unpack(data), model)
    return model.to(device).eval()
