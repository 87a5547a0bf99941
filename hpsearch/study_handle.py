"""Studies from a notebook or a script, at Optuna's ease::

    import hpsearch

    hs = hpsearch.connect()                       # HPSEARCH_SERVER, HPSEARCH_TOKEN
    study = hs.create_study("study.yaml")          # or a dict; hs.load_study(3 | "name")
    study.optimize(train, n_trials=20, n_jobs=2)   # train(trial) -> {"dev_accuracy": ...}
    study.trials_dataframe()

Trials run in this process (``ask``/``tell``, ``optimize``) hold a lease as a worker's do, so
``hpsearch worker`` processes elsewhere can serve the same study at the same time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.client import DEFAULT_SERVER, ApiError, Client
from hpsearch.errors import HpsearchError, InvalidState, LeaseLost, NotFound
from hpsearch.spec import load_spec_file
from hpsearch.states import StudyState
from hpsearch.study_results import Progress, TrialResult
from hpsearch.trial_lease import TrialLease, TrialLike
from hpsearch.worker_code import CheckpointState, rebuild_model

if TYPE_CHECKING:
    import pandas

_ENDED = (StudyState.COMPLETED, StudyState.STOPPED)


class StudyEnded(HpsearchError):
    """``ask`` on a study that has no trial left to run: its budget is used, or it ended."""

    code = "study_ended"


def connect(url: str | None = None, token: str | None = None) -> Connection:
    """A connection to a server: ``url`` (default ``$HPSEARCH_SERVER``, else the local
    default) with ``token`` (default ``$HPSEARCH_TOKEN``)."""
    server = url or os.environ.get("HPSEARCH_SERVER") or DEFAULT_SERVER
    return Connection(Client(server, token=token or os.environ.get("HPSEARCH_TOKEN")))


class Connection:
    """What :func:`connect` returns: studies by handle."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"<hpsearch server {self.client.server}>"

    def create_study(self, spec: Mapping[str, Any] | str | Path) -> Study:
        """Submits ``spec`` (a dict, or a YAML/JSON file's path) and returns its handle."""
        data = (
            load_spec_file(spec).model_dump(mode="json")
            if isinstance(spec, str | Path)
            else dict(spec)
        )
        created = self.client.create_study(data)
        return Study(self.client, int(created["id"]))

    def load_study(self, study: int | str) -> Study:
        """A study by id, or by name (the newest of that name)."""
        if isinstance(study, int) or study.isdigit():
            self.client.study(int(study))  # 404 now, not at first use
            return Study(self.client, int(study))
        named = [s for s in self.client.studies() if s["name"] == study]
        if not named:
            raise NotFound(f"no study named {study!r} on {self.client.server}")
        return Study(self.client, int(named[0]["id"]))  # listed newest first

    def studies(self) -> list[dict[str, Any]]:
        return self.client.studies()

    def close(self) -> None:
        self.client.close()


class Study:
    """One study on the server: run its trials here, read its results."""

    def __init__(self, client: Client, study_id: int) -> None:
        self.client = client
        self.id = study_id
        # One worker id for every trial this handle runs: the server's lease rules see this
        # process as one more worker (visible on /workers).
        self.worker_id = f"{socket.gethostname()}-py{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def __repr__(self) -> str:
        return f"<study {self.id} on {self.client.server}>"

    @property
    def info(self) -> dict[str, Any]:
        """The study as the API returns it (state, counts, best, spec), read now."""
        return self.client.study(self.id)

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.info["spec"])

    # -- running trials here ----------------------------------------------------------------

    def ask(self, timeout: float | None = None, heartbeat: bool = True) -> TrialLease:
        """The study's next trial, leased to this process (heartbeated in the background).

        Waits while the study's parallelism is in use; raises :class:`StudyEnded` when it has
        no trial left, ``TimeoutError`` after ``timeout`` s."""
        task = self.spec["task"]
        # This process runs the trial itself, whatever code the study names.
        entry_points = [task["entry_point"]] if task.get("entry_point") else []
        commands = [task["command"]] if task.get("command") else []
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            reply = self.client.claim(
                self.worker_id,
                socket.gethostname(),
                [],
                study_id=self.id,
                entry_points=entry_points,
                commands=commands,
            )
            claimed = reply.get("trial")
            if claimed is not None and claimed.get("schedule"):
                # A replay changes hyperparameters between resumed runs of the trainer, which
                # only a worker does: here it would train with its params alone. Back it goes.
                reason = "a replay of a PBT schedule: only a worker trains it"
                self.client.release(claimed["id"], self.worker_id, claimed["attempt"], reason)
                raise InvalidState(
                    f"study {self.id} trial {claimed['number']} replays a PBT schedule, which "
                    f"only a worker trains: run it with `hpsearch worker --study {self.id}`"
                )
            if claimed is not None and claimed.get("kind", "train") == "train":
                # Checkpoint state is the worker's format (torch, loaded on first use only).
                return TrialLease(
                    self.client, claimed, self.worker_id, CheckpointState(), heartbeat=heartbeat
                )
            if claimed is not None:
                # Handed the study's final test evaluation, which only a worker runs: left
                # unheartbeated, it goes back to the queue for one when its lease expires.
                raise InvalidState(
                    f"study {self.id} has no trial to run, only its final test evaluation: "
                    f"run it with `hpsearch worker --study {self.id}`"
                )
            if not reply.get("open_studies", True):
                info = self.info
                why = f" ({info['reason']})" if info.get("reason") else ""
                raise StudyEnded(
                    f"study {self.id} has no trial left to run: it is {info['state']}{why}; "
                    "study.extend(n) gives it more"
                )
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"study {self.id}: no trial to run within {timeout} s")
            time.sleep(delay)  # the study's parallelism is in use: poll, backing off
            delay = min(delay * 2, 1.0)

    def tell(
        self,
        trial: TrialLease,
        metrics: Mapping[str, Any] | None = None,
        *,
        failed: BaseException | str | bool | None = None,
        pruned: bool = False,
    ) -> None:
        """Ends ``trial``: completed with ``metrics`` (default: its last report's), or
        ``failed`` (an exception, a message, or True). NaN and infinity are recorded as not
        measured. A trial whose lease expired raises :class:`~hpsearch.errors.LeaseLost`."""
        if failed is None or failed is False:
            trial.complete(metrics, pruned=pruned)
        elif isinstance(failed, BaseException):
            trial.fail("".join(traceback.format_exception(failed)))
        else:
            trial.fail("failed by the caller" if failed is True else str(failed))

    def optimize(
        self,
        fn: Callable[[TrialLike], Mapping[str, Any] | None],
        n_trials: int | None = None,
        n_jobs: int = 1,
        timeout: float | None = None,
        catch: tuple[type[Exception], ...] = (),
    ) -> None:
        """Runs ``fn(trial)`` on the study's trials in this process, as a worker would:
        ``fn`` returns the trial's metrics (or None: its last report's).

        ``n_trials``: how many this call runs (default: until the study has none left);
        ``n_jobs``: at once, in threads (-1: one per CPU); ``timeout``: no trial starts after
        it. An exception fails its trial; one not in ``catch`` then ends the call and is
        raised, once the other jobs' trials end. A trial whose lease was lost (this process
        stalled past it) is left to its new claimer, with a warning."""
        jobs = (os.cpu_count() or 1) if n_jobs == -1 else max(1, n_jobs)
        deadline = None if timeout is None else time.monotonic() + timeout
        lock, stop = threading.Lock(), threading.Event()
        started = 0
        raised: list[BaseException] = []

        def take_one() -> bool:
            nonlocal started
            with lock:
                if stop.is_set() or (n_trials is not None and started >= n_trials):
                    return False
                started += 1
                return True

        def job() -> None:
            while take_one():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                try:
                    trial = self.ask(timeout=left)
                except (StudyEnded, TimeoutError):
                    return
                try:
                    self._run(fn, trial)
                except LeaseLost as e:
                    # Not the function's fault: the trial is another claimer's now.
                    warnings.warn(str(e), stacklevel=2)
                    continue
                except catch:
                    continue
                except BaseException as e:
                    raised.append(e)
                    stop.set()
                    return

        if jobs == 1:
            job()
        else:
            threads = [threading.Thread(target=job, daemon=True) for _ in range(jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if raised:
            raise raised[0]

    def _run(self, fn: Callable[[TrialLike], Mapping[str, Any] | None], trial: TrialLease) -> None:
        try:
            returned = fn(trial)
            if returned is not None and not isinstance(returned, Mapping):
                raise TypeError(
                    f"the function returned {type(returned).__name__}; it must return a dict "
                    "of metric name -> number (or None to keep its last report)"
                )
        except BaseException as e:
            if not trial.ended:
                trial.fail("".join(traceback.format_exception(e)))
            raise
        if not trial.ended:
            trial.complete(returned, pruned=trial.stop_requested and returned is None)

    # -- reading results --------------------------------------------------------------------

    def trials(self) -> list[TrialResult]:
        """Every trial, by number."""
        return [TrialResult.of(t) for t in self._raw()]

    @property
    def best_trial(self) -> TrialResult | None:
        """The best feasible trial (meeting every constraint); None while there is none."""
        best = self.client.best(self.id)
        return TrialResult.of(best) if best else None

    def trial(self, number: int) -> TrialResult:
        """A trial by its number in the study."""
        return TrialResult.of(self.client.trial_by_number(self.id, number))

    def trials_dataframe(self) -> pandas.DataFrame:
        """One row per trial: ``number, state, value, params_*``, each metric by its name,
        ``feasible``, ``broken`` (the constraints it misses), the times and the error's first
        line. Needs pandas (``pip install 'hpsearch[notebook]'``)."""
        from hpsearch.study_frame import trials_frame

        return trials_frame(self.spec, self._raw())

    def _raw(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.client.trials(self.id, limit=10_000, offset=len(out))
            out.extend(page)
            if len(page) < 10_000:
                return out

    def wait(self, timeout: float | None = None, progress: bool = True) -> str:
        """Blocks until the study ends (workers elsewhere run its trials); returns its state.
        ``progress``: a bar of ended trials over the budget (tqdm when installed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(self.id) if progress else None
        try:
            while True:
                info = self.info
                if bar is not None:
                    bar.show(info)
                if info["state"] in _ENDED:
                    return str(info["state"])
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"study {self.id} is still {info['state']} after {timeout} s"
                    )
                time.sleep(0.5)
        finally:
            if bar is not None:
                bar.close()

    # -- changing it ------------------------------------------------------------------------

    def enqueue(self, params: Mapping[str, Any], add_to_budget: bool = True) -> TrialResult:
        """Queues ``params`` to run next; parameters left out are proposed by the study's
        sampler. It adds one to the budget unless ``add_to_budget`` is False (then it takes
        one of the trials left, as Optuna's ``enqueue_trial`` does)."""
        return TrialResult.of(self.client.enqueue(self.id, params, add_to_budget))

    def extend(self, n_trials: int) -> None:
        """``n_trials`` more trials; a completed study runs again."""
        self.client.extend(self.id, n_trials)

    def pause(self) -> None:
        self.client.control(self.id, "pause")

    def resume(self) -> None:
        self.client.control(self.id, "resume")

    def stop(self) -> None:
        self.client.control(self.id, "stop")

    # -- models -----------------------------------------------------------------------------

    def download_checkpoint(
        self, trial: TrialResult | TrialLease | int, path: str | Path | None = None
    ) -> bytes:
        """The trial's (or trial number ``trial``'s) latest checkpoint; written to ``path``
        too when given. For a built-in trainer, its final model (see :meth:`load_model`)."""
        found = self.trial(trial) if isinstance(trial, int) else trial
        data = self.client.download_checkpoint(found.id)
        if data is None:
            raise NotFound(f"study {self.id} trial {found.number} has no checkpoint")
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def load_model(self, trial: TrialResult | int | None = None, device: str = "cpu") -> Any:
        """The trained ``torch.nn.Module`` of a built-in trainer's trial (default: the best),
        rebuilt from its checkpoint. Needs the worker's packages (torch)."""
        found = self.best_trial if trial is None else trial
        if found is None:
            raise NotFound(f"study {self.id} has no feasible trial yet")
        found = self.trial(found) if isinstance(found, int) else found
        data = self.download_checkpoint(found)
        # The model code is the worker's (torch), loaded only here, when asked for.
        return rebuild_model(found.params, self.spec["task"], data, device)


__all__ = ["ApiError", "Connection", "Study", "StudyEnded", "TrialResult", "connect"]
