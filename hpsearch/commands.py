"""The ``command`` trainer's argv: placeholders, substitution, and who may run it.

A study names a program as an argv template (``["python", "train.py", "--lr", "{lr}"]``);
the worker fills each item on its own and executes the result without a shell, so a value is
always one argument and never a command. A worker runs a command only when one of the argv
prefixes its command line allows (``hpsearch worker --allow-command "python train.py"``)
starts it: the study's author names the program, the worker's operator decides which
programs may run on the box.

Pure string logic, shared by the server (validation, which worker may claim what) and the
worker (substitution, the last check before the program starts).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Mapping, Sequence

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
"""``{name}``: only names, so a JSON argument (``{"a": 1}``) stays as it is."""

BUILTIN_PLACEHOLDERS = ("epochs", "seed", "trial_id", "checkpoint_dir")
"""Filled by the worker for every trial, beside the trial's parameters."""

Prefix = tuple[str, ...]


class CommandError(ValueError):
    """An ``--allow-command`` value that cannot be an argv prefix."""


def placeholders(argv: Sequence[str]) -> list[str]:
    """The names the template refers to, in order of first use."""
    return list(dict.fromkeys(m for item in argv for m in PLACEHOLDER.findall(item)))


def substitute(argv: Sequence[str], values: Mapping[str, object]) -> list[str]:
    """Each item with its ``{name}`` replaced by ``values[name]``; one item stays one item."""

    def value(m: re.Match[str]) -> str:
        return _text(values[m.group(1)])

    return [PLACEHOLDER.sub(value, item) for item in argv]


def parse_prefix(text: str) -> Prefix:
    """``"python train.py"`` as an argv prefix, split as a POSIX shell would split it."""
    try:
        prefix = tuple(shlex.split(text))
    except ValueError as e:
        raise CommandError(f"--allow-command {text!r}: {e}") from None
    if not prefix:
        raise CommandError(
            "--allow-command needs a program, e.g. --allow-command 'python train.py'"
        )
    if any(PLACEHOLDER.search(item) for item in prefix):
        raise CommandError(
            f"--allow-command {text!r}: a prefix names fixed words; placeholders belong in the "
            "study's command"
        )
    return prefix


def allowed(argv: Sequence[str], prefixes: Collection[Sequence[str]]) -> bool:
    """Whether ``argv`` starts with one of ``prefixes``, item for item."""
    return any(len(p) > 0 and tuple(argv[: len(p)]) == tuple(p) for p in prefixes)


def _text(value: object) -> str:
    # JSON's spelling for booleans, as a flag parser is likelier to read; repr for floats,
    # so a learning rate keeps every digit it was sampled with.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
