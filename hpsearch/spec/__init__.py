"""The study spec: the public contract users write in YAML or JSON.

Keys may be added by later versions, never renamed. Validation names the field and the reason;
:func:`load_spec_text` also names the line of the file.

One module per concept: :mod:`~hpsearch.spec.base` (the strict model, names, numeric ceilings),
:mod:`~hpsearch.spec.errors` (errors in the user's terms), :mod:`~hpsearch.spec.space`,
:mod:`~hpsearch.spec.objective`, :mod:`~hpsearch.spec.samplers`, :mod:`~hpsearch.spec.task`
(task, split, budget, requires), :mod:`~hpsearch.spec.pruners` (pruners and schedulers),
:mod:`~hpsearch.spec.catalogue` (checks against the trainer's catalogue),
:mod:`~hpsearch.spec.study` (the whole spec and :func:`parse_spec`) and
:mod:`~hpsearch.spec.text` (YAML/JSON in, JSON out). Import from here: these names are the
public surface.
"""

from hpsearch.spec.base import (
    ENTRY_POINT,
    FLOAT_BOUND,
    INT_MAX,
    INT_MIN,
    SEED_MAX,
    BoundedFloat,
    Choice,
    Int32,
    Seed,
)
from hpsearch.spec.errors import FieldError, SpecError, field_path, plain_errors, user_loc
from hpsearch.spec.objective import ConstraintSpec, ObjectiveSpec
from hpsearch.spec.pruners import (
    AshaPrunerSpec,
    HyperbandPrunerSpec,
    MedianPrunerSpec,
    NoPrunerSpec,
    NoSchedulerSpec,
    PbtSchedulerSpec,
    PrunerSpec,
    SchedulerSpec,
)
from hpsearch.spec.samplers import (
    MAX_SHUFFLED_GRID,
    CmaesSamplerSpec,
    CoarseToFineSamplerSpec,
    GpSamplerSpec,
    GridSamplerSpec,
    QmcSamplerSpec,
    RandomSamplerSpec,
    SamplerSpec,
    TpeSamplerSpec,
    grid_values,
)
from hpsearch.spec.space import CategoricalParamSpec, FloatParamSpec, IntParamSpec, ParamSpec
from hpsearch.spec.study import StudySpec, parse_spec
from hpsearch.spec.task import BudgetSpec, RequiresSpec, SplitSpec, TaskSpec, failure_limit
from hpsearch.spec.text import load_spec_file, load_spec_text, spec_to_json

__all__ = [
    "ENTRY_POINT",
    "FLOAT_BOUND",
    "INT_MAX",
    "INT_MIN",
    "MAX_SHUFFLED_GRID",
    "SEED_MAX",
    "AshaPrunerSpec",
    "BoundedFloat",
    "BudgetSpec",
    "CategoricalParamSpec",
    "Choice",
    "CmaesSamplerSpec",
    "CoarseToFineSamplerSpec",
    "ConstraintSpec",
    "FieldError",
    "FloatParamSpec",
    "GpSamplerSpec",
    "GridSamplerSpec",
    "HyperbandPrunerSpec",
    "Int32",
    "IntParamSpec",
    "MedianPrunerSpec",
    "NoPrunerSpec",
    "NoSchedulerSpec",
    "ObjectiveSpec",
    "ParamSpec",
    "PbtSchedulerSpec",
    "PrunerSpec",
    "QmcSamplerSpec",
    "RandomSamplerSpec",
    "RequiresSpec",
    "SamplerSpec",
    "SchedulerSpec",
    "Seed",
    "SpecError",
    "SplitSpec",
    "StudySpec",
    "TaskSpec",
    "TpeSamplerSpec",
    "failure_limit",
    "field_path",
    "grid_values",
    "load_spec_file",
    "load_spec_text",
    "parse_spec",
    "plain_errors",
    "spec_to_json",
    "user_loc",
]
