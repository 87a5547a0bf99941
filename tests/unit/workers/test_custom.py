"""The worker's own guard on custom code, whatever the server hands out."""

from __future__ import annotations

import pytest

from workers.custom import EntryPointNotAllowed, run_custom


def test_an_entry_point_the_worker_does_not_allow_is_refused_before_any_import() -> None:
    # The module does not exist: importing it would raise ModuleNotFoundError instead.
    task = {"trainer": "custom", "entry_point": "nowhere.at_all:train", "epochs": 1}
    with pytest.raises(EntryPointNotAllowed, match=r"start it with --allow nowhere\.at_all:train"):
        run_custom({}, task, lambda step, metrics: False, allowed=["nowhere.at_all:other"])
