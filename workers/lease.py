"""One claimed trial as its worker holds it: the lease, kept alive by heartbeats; the trial's
reports on their way to the server (:mod:`workers.reports`); its checkpoints; and whether the
server wants it stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError, Client, ServerUnreachable
from workers.checkpoints import ServerCheckpoints
from workers.heartbeat import Heartbeat
from workers.reports import Metrics, ReportsFirst, Step, TrialReports
from workers.trial_log import TrialLog


class Lease(Heartbeat):
    def __init__(
        self, client: Client, worker_id: str, claim: ClaimedJob, heartbeat_seconds: float
    ) -> None:
        super().__init__(heartbeat_seconds)
        self.client = client
        self.worker_id = worker_id
        self.trial_id: int = claim["id"]
        self.attempt: int = claim["attempt"]
        # Made at the claim, which starts the first report interval. A server that predates
        # report_interval_s sends none: every report at once, as it expects.
        self.reports = TrialReports(self._report, float(claim.get("report_interval_s") or 0.0))
        self.log = TrialLog(self._append_log)
        self.lost = False

    @property
    def stop_reason(self) -> str | None:
        """Why the server wants the trial stopped, from the last report's or heartbeat's ack."""
        return self.reports.stop_reason

    def __enter__(self) -> Self:
        super().__enter__()
        self.reports.start()
        self.log.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.close()
        self.reports.close()
        super().__exit__(*exc)

    def beat(self) -> None:
        self.reports.note(self.client.heartbeat(self.trial_id, self.worker_id, self.attempt))

    def on_lost(self) -> None:
        self.lost = True

    def checkpoints(self, say: Callable[[str], None]) -> ReportsFirst:
        """The trial's checkpoints in the server's artifact store, saved as this lease's holder
        (a re-queued trial or a fork finds its checkpoint there and resumes after its epoch),
        each after the reports it covers."""
        server = ServerCheckpoints(self.client, self.trial_id, self.worker_id, self.attempt, say)
        return ReportsFirst(server, self.reports)

    def send_held(self) -> str | None:
        """Best effort, before the trial fails or goes back to the queue: sends its held-back
        steps, so what it did is kept. Returns why they could not be sent, if that matters
        (not when the lease is gone: they went with it)."""
        if self.lost:
            return None
        try:
            self.reports.flush()
        except ApiError as e:
            return None if e.status == 409 else e.message
        except ServerUnreachable as e:
            return str(e)
        return None

    def _append_log(self, offset: int, text: str) -> dict[str, Any]:
        return self.client.append_log(self.trial_id, self.worker_id, self.attempt, offset, text)

    def _report(self, step: int, metrics: Metrics, earlier: list[Step]) -> dict[str, Any]:
        return self.client.report(
            self.trial_id, self.worker_id, self.attempt, step, metrics, earlier
        )
