"""A small HTTP client for the REST API, for scripts, notebooks, the CLI and workers.

Connection failures, and 503s (the server's database restarting), are retried with
exponential backoff: a server or database restart must not kill a worker. Other HTTP errors
are not retried, they are raised as :class:`ApiError` with the server's ``code`` and message.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import httpx

from hpsearch.objective import finite
from hpsearch.states import UNENDED

DEFAULT_SERVER = "http://127.0.0.1:8765"
# The longest failure text the server stores (in characters); a longer traceback is cut to
# its end, where the exception is, rather than refused and lost.
MAX_ERROR_CHARS = 50_000
# The most characters of a trial's output sent in one request: with JSON's escapes at their
# worst, still well inside the server's request limit.
MAX_LOG_PIECE_CHARS = 65_536
# Answers that mean "not now", retried like a refused connection: the server's database is
# restarting (503, sent only when nothing was changed) or a proxy has no server (502, 504).
_NOT_NOW = frozenset({502, 503, 504})
_FIRST_DELAY = 0.2

Steps = Sequence[tuple[int, Mapping[str, float | None]]]
"""Reported steps, oldest first: (step, metrics)."""


class ApiError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class ServerUnreachable(RuntimeError):
    pass


class Interrupted(ServerUnreachable):
    """Retrying was cut short by the caller (a worker told to stop)."""


class BadServerUrl(ValueError):
    """A server address that cannot be reached as given; the message says the fix."""


def server_url(url: str) -> str:
    """The server's base address from what a user typed: a missing ``http://`` is added and
    a trailing ``/api/v1`` (the API's own prefix) dropped; anything else that cannot be an
    HTTP server's address raises :class:`BadServerUrl` saying what to write."""
    given = url.strip()
    base = given.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    base = base.removesuffix("/api/v1").rstrip("/")
    try:
        parsed = httpx.URL(base)
    except httpx.InvalidURL as e:
        raise BadServerUrl(f"server {given!r} is not a URL ({e}): write http://HOST:PORT") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadServerUrl(f"server {given!r} is not an HTTP address: write http://HOST:PORT")
    return base


class Client:
    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        timeout: float = 30.0,
        retry_for: float = 120.0,
        on_retry: Callable[[str], None] | None = None,
        interrupt: threading.Event | None = None,
    ) -> None:
        """``server``: see :func:`server_url`. ``on_retry(message)`` is told when a request
        fails and will be retried (for up to ``retry_for`` s); setting ``interrupt`` ends
        the retrying at once (:class:`Interrupted`)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server_url(server)
        self._http = httpx.Client(
            base_url=self.server + "/api/v1", headers=headers, timeout=timeout
        )
        self.retry_for = retry_for
        self._on_retry = on_retry
        self._interrupt = interrupt or threading.Event()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        return self._obj("GET", "/health")

    # -- studies ---------------------------------------------------------------------------

    def create_study(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self._obj("POST", "/studies", json=dict(spec))

    def studies(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._list("GET", "/studies", params={"state": state} if state else None)

    def study(self, study_id: int) -> dict[str, Any]:
        return self._obj("GET", f"/studies/{study_id}")

    def trials(
        self, study_id: int, order: str = "number", limit: int = 1000, offset: int = 0
    ) -> list[dict[str, Any]]:
        return self._list(
            "GET",
            f"/studies/{study_id}/trials",
            params={"order": order, "limit": limit, "offset": offset},
        )

    def best(self, study_id: int) -> dict[str, Any] | None:
        best: dict[str, Any] | None = self._call("GET", f"/studies/{study_id}/best")
        return best

    def control(self, study_id: int, action: str) -> dict[str, Any]:
        return self._obj("POST", f"/studies/{study_id}/{action}")

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], add_to_budget: bool = True
    ) -> dict[str, Any]:
        """Queues ``params`` (some or all of the space's; the study's sampler proposes the
        rest) to run next. It adds one to the study's max_trials unless ``add_to_budget`` is
        False, when it takes one of the trials left (refused when none is)."""
        body = {"params": dict(params), "add_to_budget": add_to_budget}
        return self._obj("POST", f"/studies/{study_id}/trials", json=body)

    def extend(self, study_id: int, n_trials: int) -> dict[str, Any]:
        """``n_trials`` more for the study; a completed one runs again."""
        return self._obj("POST", f"/studies/{study_id}/extend", json={"n_trials": n_trials})

    def delete_study(self, study_id: int) -> None:
        self._call("DELETE", f"/studies/{study_id}")

    def trial_by_number(self, study_id: int, number: int) -> dict[str, Any]:
        """A trial by the identity users see: its study and its number there."""
        return self._obj("GET", f"/studies/{study_id}/trials/{number}")

    def trial(self, trial_id: int) -> dict[str, Any]:
        return self._obj("GET", f"/trials/{trial_id}")

    def stop_trial(self, trial_id: int) -> dict[str, Any]:
        return self._obj("POST", f"/trials/{trial_id}/stop")

    def fork(self, trial_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
        """A new trial continuing ``trial_id`` from its checkpoint with ``params`` changed."""
        return self._obj("POST", f"/trials/{trial_id}/fork", json={"params": dict(params)})

    def replay(self, trial_id: int) -> dict[str, Any]:
        """A new trial that trains ``trial_id``'s PBT schedule from scratch (its
        hyperparameters changed at the epochs its lineage changed them)."""
        return self._obj("POST", f"/trials/{trial_id}/replay")

    def schedule(self, trial_id: int) -> dict[str, Any]:
        """The hyperparameters the trial's model trains with, epoch range by range."""
        return self._obj("GET", f"/trials/{trial_id}/schedule")

    def import_history(self, study_id: int, trials: list[dict[str, Any]]) -> int:
        """Adds ended trials (``{params, metrics, state}``) to a study, in batches."""
        imported = 0
        for i in range(0, len(trials), 1000):
            batch = trials[i : i + 1000]
            reply = self._obj("POST", f"/studies/{study_id}/history", json={"trials": batch})
            imported += int(reply["imported"])
        return imported

    def regions(self, study_id: int) -> dict[str, Any]:
        """The coarse-to-fine rounds of a study and each round's region."""
        return self._obj("GET", f"/studies/{study_id}/regions")

    def final_evaluation(self, study_id: int) -> dict[str, Any] | None:
        """Where the study's one test-set evaluation stands; ``None`` if never requested."""
        evaluation: dict[str, Any] | None = self._call("GET", f"/studies/{study_id}/evaluate-test")
        return evaluation

    def evaluate_test(self, study_id: int, trial_id: int | None = None) -> dict[str, Any]:
        """Queues the study's one test-set evaluation (default: its best feasible trial)."""
        return self._obj("POST", f"/studies/{study_id}/evaluate-test", json={"trial_id": trial_id})

    # -- the worker's side -----------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        host: str,
        devices: list[str],
        study_id: int | None = None,
        entry_points: Sequence[str] = (),
        commands: Sequence[Sequence[str]] = (),
        labels: Mapping[str, str] | None = None,
        refused_studies: Sequence[int] = (),
        ahead: bool = False,
    ) -> dict[str, Any]:
        """The worker's next trial; ``entry_points`` and ``commands``: the custom trainers and
        the command prefixes it may run; ``labels``: its ``--label``s; ``refused_studies``:
        those it cannot set up; ``ahead``: a trial to hold while the current one runs.

        Each call sends a new idempotency key, and its retries (a lost connection, a server
        restarting) the same one: a claim the server made before its reply was lost is then
        handed back, not made twice."""
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "host": host,
            "devices": devices,
            "study_id": study_id,
            "entry_points": list(entry_points),
            "commands": [list(c) for c in commands],
            "request_id": uuid.uuid4().hex,
        }
        # Only when there are any: a server older than these fields refuses them.
        if labels:
            body["labels"] = dict(labels)
        if refused_studies:
            body["refused_studies"] = list(refused_studies)
        if ahead:
            body["ahead"] = True
        return self._obj("POST", "/claims", json=body)

    def worker_exited(self, worker_id: str) -> None:
        """Says the worker is leaving: once, not retried (a worker on its way out does not
        wait for a server that is down; the page then calls it lost, as it would anyway)."""
        self._call("POST", "/workers/exit", json={"worker_id": worker_id}, retry_for=0.0)

    def heartbeat(self, trial_id: int, worker_id: str, attempt: int) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/heartbeat",
            json={"worker_id": worker_id, "attempt": attempt},
        )

    def report(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        step: int,
        metrics: Mapping[str, float | None],
        earlier: Steps = (),
    ) -> dict[str, Any]:
        """One step's metrics, after the ``earlier`` steps (oldest first) held back since the
        last report; the ack says whether to stop."""
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "attempt": attempt,
            "step": step,
            "metrics": json_metrics(metrics),
        }
        if earlier:  # only when there are any: a server older than `earlier` refuses the field
            body["earlier"] = _steps(earlier)
        return self._obj("POST", f"/trials/{trial_id}/intermediate", json=body)

    def complete(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        metrics: Mapping[str, float | None],
        pruned: bool = False,
        steps: Steps = (),
        claim_next: Mapping[str, Any] | None = None,
        started: int | None = None,
    ) -> dict[str, Any]:
        """Ends the trial, storing first the ``steps`` not reported yet. With ``claim_next``
        (``host``, ``devices``, ``study_id``), the reply's ``next`` is the worker's next claim,
        as :meth:`claim` returns it (the completion is committed whatever the claim finds).
        ``started``: a trial held ahead that the worker started as this one ended."""
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "attempt": attempt,
            "metrics": json_metrics(metrics),
            "pruned": pruned,
        }
        if steps:
            body["steps"] = _steps(steps)
        if claim_next is not None:
            body["claim_next"] = dict(claim_next)
        if started is not None:
            body["started"] = started
        return self._obj("POST", f"/trials/{trial_id}/complete", json=body)

    def fail(self, trial_id: int, worker_id: str, attempt: int, error: str) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/fail",
            json={"worker_id": worker_id, "attempt": attempt, "error": _tail(error)},
        )

    def release(self, trial_id: int, worker_id: str, attempt: int, reason: str) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/release",
            json={"worker_id": worker_id, "attempt": attempt, "reason": reason},
        )

    def upload_checkpoint(
        self, trial_id: int, worker_id: str, attempt: int, step: int, data: bytes
    ) -> dict[str, Any]:
        return self._obj(
            "PUT",
            f"/trials/{trial_id}/checkpoint",
            params={"worker_id": worker_id, "attempt": attempt, "step": step},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def download_checkpoint(
        self, trial_id: int, worker_id: str | None = None, attempt: int | None = None
    ) -> bytes | None:
        """The trial's latest checkpoint, or None when it has none. A worker token downloads it
        as the holder of a lease: the trial's, or its final test evaluation's (``worker_id``,
        ``attempt``); a token that reads results needs neither."""
        params = {"worker_id": worker_id, "attempt": attempt} if worker_id is not None else None
        try:
            return self._response("GET", f"/trials/{trial_id}/checkpoint", params=params).content
        except ApiError as e:
            if e.status == 404 and e.code == "not_found":
                return None
            raise

    def append_log(
        self, trial_id: int, worker_id: str, attempt: int, offset: int, text: str
    ) -> dict[str, Any]:
        """Appends a piece (at most MAX_LOG_PIECE_CHARS) of the attempt's output that starts
        at byte ``offset``; a resent piece is not appended twice."""
        return self._obj(
            "POST",
            f"/trials/{trial_id}/logs",
            json={"worker_id": worker_id, "attempt": attempt, "offset": offset, "text": text},
        )

    def logs(self, trial_id: int, attempt: int | None = None, offset: int = 0) -> dict[str, Any]:
        """What the trial's attempt (default: the latest) printed, from ``offset`` on; follow
        it by asking again from the reply's ``next_offset``."""
        params: dict[str, Any] = {"offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        return self._obj("GET", f"/trials/{trial_id}/logs", params=params)

    def follow_logs(
        self, trial_id: int, attempt: int | None = None, follow: bool = False, every: float = 1.0
    ) -> Iterator[str]:
        """The trial's log as it grows: what is there, then (``follow``) what comes until the
        trial ends, moving on to a new attempt when the trial is retried (unless ``attempt``
        names one). A part dropped meanwhile (the server keeps the last MiB of an attempt)
        is said in a line of its own."""
        reading, offset = attempt, 0
        while True:
            chunk = self.logs(trial_id, reading, offset)
            if chunk["truncated"]:
                yield f"[... output before byte {chunk['offset']} was not kept ...]\n"
            yield chunk["text"]
            offset, reading = chunk["next_offset"], chunk["attempt"]
            newer = [a for a in chunk["attempts"] if reading is not None and a > reading]
            if attempt is None and newer:
                reading, offset = newer[0], 0
                yield f"[... attempt {reading} ...]\n"
                continue
            if not follow or chunk["state"] not in UNENDED:
                return
            time.sleep(every)

    def test_evaluation_heartbeat(
        self, trial_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/test-evaluation/heartbeat",
            json={"worker_id": worker_id, "attempt": attempt},
        )

    def complete_test_evaluation(
        self, trial_id: int, worker_id: str, attempt: int, metrics: Mapping[str, float]
    ) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/test-evaluation/complete",
            json={"worker_id": worker_id, "attempt": attempt, "metrics": json_metrics(metrics)},
        )

    def fail_test_evaluation(
        self, trial_id: int, worker_id: str, attempt: int, error: str
    ) -> dict[str, Any]:
        return self._obj(
            "POST",
            f"/trials/{trial_id}/test-evaluation/fail",
            json={"worker_id": worker_id, "attempt": attempt, "error": _tail(error)},
        )

    # -- transport -------------------------------------------------------------------------

    def _obj(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._call(method, path, **kwargs))

    def _list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call(method, path, **kwargs))

    def _call(
        self, method: str, path: str, *, retry_for: float | None = None, **kwargs: Any
    ) -> Any:
        response = self._response(method, path, retry_for=retry_for, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _response(
        self, method: str, path: str, *, retry_for: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        delay = _FIRST_DELAY
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.RemoteProtocolError,
                httpx.ConnectTimeout,
                httpx.ReadTimeout,
            ) as e:
                why = f"{self.server} unreachable: {e}"
            else:
                if response.status_code not in _NOT_NOW:
                    break
                why = f"{self.server} unavailable: {response.status_code} {response.text[:200]}"
            if time.monotonic() + delay > deadline:
                raise ServerUnreachable(why)
            if delay == _FIRST_DELAY and self._on_retry is not None:
                left = deadline - time.monotonic()
                self._on_retry(f"{why}; retrying for {left:.0f} s")
            if self._interrupt.wait(delay):
                raise Interrupted(f"{why}; stopped retrying")
            delay = min(delay * 2, 5.0)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"code": "http_error", "message": response.text}
            raise ApiError(
                response.status_code,
                body.get("code", "http_error"),
                body.get("message", response.text),
                body,
            )
        return response


def _steps(steps: Steps) -> list[dict[str, Any]]:
    return [{"step": step, "metrics": json_metrics(metrics)} for step, metrics in steps]


def json_metrics(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    """Metrics as the API takes them. JSON has no NaN or infinity, and the server records a
    metric that is not a finite number as not measured, so NaN and ±inf are sent as ``null``
    rather than failing the request; the trial's metrics then leave that metric out (NaN in
    ``trials_dataframe()``)."""
    return {name: finite(value) for name, value in metrics.items()}


def _tail(error: str) -> str:
    if len(error) <= MAX_ERROR_CHARS:
        return error
    cut = "[... earlier output cut ...]\n"
    return cut + error[len(error) - MAX_ERROR_CHARS + len(cut) :]


def wait_until_healthy(
    url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path | None = None
) -> None:
    """Waits for a server process started at ``url`` to answer /health; fails fast, with its
    log when given, if the process exits first."""
    deadline = time.monotonic() + timeout
    with Client(url, retry_for=0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = f":\n{log.read_text()}" if log is not None else ""
                raise RuntimeError(f"the server exited with code {proc.returncode}{output}")
            try:
                client.health()
                return
            except ServerUnreachable:
                time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url}/api/v1/health within {timeout} s")
