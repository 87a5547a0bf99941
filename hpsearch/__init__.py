"""hpsearch: hyperparameter search as a service.

From a notebook or a script, ``hpsearch.connect()`` (see docs/python.md)::

    study = hpsearch.connect().create_study("study.yaml")
    study.optimize(train, n_trials=20)
"""

from hpsearch.study_handle import Connection, Study, StudyEnded, connect
from hpsearch.study_results import TrialResult
from hpsearch.trial_lease import TrialLease, TrialLike

__all__ = ["Connection", "Study", "StudyEnded", "TrialLease", "TrialLike", "TrialResult", "connect"]
