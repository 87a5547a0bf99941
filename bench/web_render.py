"""Web view render time with 100 000 trials, against a 1 000-trial study and the JSON API.

Two studies are seeded by bulk SQL inserts into one SQLite file (1 000 and 100 000 ended
trials: completed feasible and infeasible, pruned, failed; ten per-epoch points for every 50th
trial), and a real ``hpsearch server`` (uvicorn) process serves them. Printed, per study, the
median over ``--repeat`` requests of each thing the study page asks for: the HTML page itself;
its plot data the first time a server process reads the study (cold), after one more trial
ended (what a page following a running study asks for: only the new trial is read), and
unchanged (cached); learning curves; the live fragment it polls every 2 s; a page deep in the
trials table; a CSV export. The named baseline is the REST API's first page of ranked trials
(``GET /api/v1/studies/{id}/trials?order=rank&limit=50``). With Debian's chromium present, the
time from navigation until every plot of the page is shown (its server-drawn poster painted)
and until every plot is interactive (drawn by Plotly), in a headless browser too.

    .venv/bin/python bench/web_render.py
    .venv/bin/python bench/web_render.py --trials 1000 100000 --repeat 7 --no-browser
    .venv/bin/python bench/web_render.py --trials 10000 100000 --repeat 6 --browser-only
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from playwright.sync_api import ViewportSize  # noqa: E402
from sqlalchemy import create_engine, insert, update  # noqa: E402

from hpsearch.client import wait_until_healthy  # noqa: E402
from hpsearch.spec import parse_spec, spec_to_json  # noqa: E402
from hpsearch.store.clock import utcnow  # noqa: E402
from hpsearch.store.db import upgrade  # noqa: E402
from hpsearch.store.models import Study, Trial, TrialIntermediate  # noqa: E402
from tests.conftest import digits_spec  # noqa: E402

SPEC: dict[str, Any] = digits_spec(
    name="bench-web",
    budget={"max_trials": 10_000_000, "parallelism": 4},
    reference_error=0.01,
)
CHROMIUM = "/usr/bin/chromium"


def seed_study(url: str, n: int, seed: int) -> int:
    """Inserts a study with ``n`` ended trials; returns its id."""
    spec = parse_spec(SPEC)
    space, objective = spec.build_space(), spec.build_objective()
    rng = random.Random(seed)
    engine = create_engine(url)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    counts = {"completed": 0, "pruned": 0, "failed": 0}
    best: tuple[float, int] | None = None
    for number in range(n):
        params = space.from_unit({name: rng.random() for name in space})
        u_lr = space["lr"].to_unit(params["lr"])
        state = rng.choices(["completed", "pruned", "failed"], [0.85, 0.1, 0.05])[0]
        counts[state] += 1
        dev = 0.97 - 0.6 * (u_lr - 0.55) ** 2 - rng.random() * 0.05
        metrics: dict[str, float | None] = {}
        if state != "failed":
            train = min(0.999, dev + 0.02 + rng.random() * 0.02)
            metrics = {
                "dev_accuracy": dev,
                "train_accuracy": train,
                "dev_error": 1 - dev,
                "train_error": 1 - train,
                "latency_ms": 20 + float(params["hidden_units"]) * float(params["layers"]) / 4,
                "n_params": 1000.0 * float(params["hidden_units"]),
            }
        e = objective.evaluate(metrics)
        value = e.value if state != "failed" else None
        feasible = state == "completed" and e.feasible and value is not None
        if feasible and (best is None or value > best[0]):
            best = (value, number)
        rows.append(
            {
                "number": number,
                "params": params,
                "state": state,
                "source": "sampler",
                "attempt": 1,
                "worker_id": "bench",
                "stop_requested": False,
                "value": value,
                "feasible": e.feasible if state != "failed" else None,
                "violation": min(e.violation, 1.7976931348623157e308),
                "metrics": metrics,
                "last_step": 10 if state == "completed" else 3,
                "error": "RuntimeError: diverged" if state == "failed" else None,
                "created_at": now,
                "started_at": now,
                "finished_at": now,
            }
        )
    with engine.begin() as conn:
        study_id = conn.execute(
            insert(Study).values(
                name=f"bench-{n}",
                spec=spec_to_json(spec),
                state="completed",
                next_number=n,
                n_completed=counts["completed"],
                n_pruned=counts["pruned"],
                n_failed=counts["failed"],
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        for start in range(0, n, 5000):
            batch = [{**r, "study_id": study_id} for r in rows[start : start + 5000]]
            conn.execute(insert(Trial), batch)
        ids = dict(
            conn.execute(
                Trial.__table__.select()
                .with_only_columns(Trial.number, Trial.id)
                .where(Trial.study_id == study_id)
            ).all()
        )
        if best is not None:
            conn.execute(
                update(Study).where(Study.id == study_id).values(best_trial_id=ids[best[1]])
            )
        curved = {k for k in range(0, n, 50)} | ({best[1]} if best else set())
        points = [
            {
                "trial_id": ids[k],
                "step": step,
                "attempt": 1,
                "metrics": {
                    "dev_accuracy": rows[k]["metrics"].get("dev_accuracy", 0.1)
                    * (1 - math.exp(-0.5 * step)),
                    "train_accuracy": rows[k]["metrics"].get("train_accuracy", 0.1)
                    * (1 - math.exp(-0.6 * step)),
                },
                "created_at": now,
            }
            for k in sorted(curved)
            for step in range(1, (rows[k]["last_step"] or 1) + 1)
        ]
        for start in range(0, len(points), 5000):
            conn.execute(insert(TrialIntermediate), points[start : start + 5000])
    engine.dispose()
    return int(study_id)


@contextmanager
def server(url: str, workdir: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": url,
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_HOST": "127.0.0.1",
    }
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "server"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc, 60, workdir / "server.log")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def get(client: httpx.Client, path: str) -> Callable[[], None]:
    def call() -> None:
        r = client.get(path)
        r.raise_for_status()
        _ = r.content

    return call


def end_one_more(url: str, study_id: int) -> None:
    """One more completed trial, written the way the store records an ended trial."""
    engine = create_engine(url)
    now = utcnow()
    with engine.begin() as conn:
        study = conn.execute(Study.__table__.select().where(Study.id == study_id)).one()
        conn.execute(
            insert(Trial).values(
                study_id=study_id,
                number=study.next_number,
                params={
                    "lr": 0.01,
                    "beta": 0.99,
                    "hidden_units": 64,
                    "layers": 2,
                    "batch_size": 64,
                },
                state="completed",
                source="sampler",
                attempt=1,
                stop_requested=False,
                value=0.5,
                feasible=True,
                violation=0.0,
                metrics={"dev_accuracy": 0.5, "latency_ms": 50.0},
                created_at=now,
                started_at=now,
                finished_at=now,
            )
        )
        conn.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(
                next_number=study.next_number + 1,
                n_completed=study.n_completed + 1,
                updated_at=now,
            )
        )
    engine.dispose()


POSTER_SIZES = (
    "history:1274x400,curves:744x360,importance:498x300,parallel:1274x360,contour:620x520,"
    "edf:1274x300,timeline:1274x300,param:412x250"
)


def measure_http(url: str, base: str, study_id: int, repeat: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=300) as c:
        # Cold: the first plot request on a study this server process has not read yet.
        cold = timed(get(c, f"/studies/{study_id}/plots.json"), 1)
        cached = timed(get(c, f"/studies/{study_id}/plots.json"), repeat)
        # What a live page asks for after a trial ended: only the new trial is read.
        samples = []
        for _ in range(repeat):
            end_one_more(url, study_id)
            samples.append(timed(get(c, f"/studies/{study_id}/plots.json"), 1))
        # Every plot's poster at the sizes a 1440-px-wide page measures.
        posters = f"/studies/{study_id}/posters?sizes={POSTER_SIZES}"
        poster_samples = []
        for _ in range(repeat):
            end_one_more(url, study_id)
            poster_samples.append(timed(get(c, posters), 1))
        return {
            "REST: ranked trials, first 50 (baseline)": timed(
                get(c, f"/api/v1/studies/{study_id}/trials?order=rank&limit=50"), repeat
            ),
            "study page HTML": timed(get(c, f"/studies/{study_id}"), repeat),
            "plot data, cold (first read)": cold,
            "plot data, after one more trial ended": statistics.median(samples),
            "plot data, unchanged (cached)": cached,
            "posters, after one more trial ended": statistics.median(poster_samples),
            "posters, unchanged (cached)": timed(get(c, posters), repeat),
            "learning curves": timed(get(c, f"/studies/{study_id}/curves.json"), repeat),
            "live fragment (polled)": timed(get(c, f"/studies/{study_id}/live"), repeat),
            "trials page 200 of the table": timed(
                get(c, f"/studies/{study_id}?page=200&order=number"), repeat
            ),
            "CSV export (all trials)": timed(
                get(c, f"/api/v1/studies/{study_id}/export?format=csv"), 1
            ),
        }


# Records, on the page's own clock, when each plot is first shown (its server-drawn poster,
# Plotly's SVG, or its "nothing to show" note appears) and when it is interactive (Plotly's
# SVG or the note), each at the next animation frame: the frame that paints it, not the moment
# it entered the document. Playwright's own calls wait for the main thread, which drawing keeps
# busy. Like a reader scrolling down as fast as plots become interactive, it brings the first
# plot not drawn by Plotly yet into view every 50 ms, so plots drawn only when scrolled to are
# timed too.
_MARK_PLOTS = """
window.__shown = {};
window.__drawn = {};
window.__top = {};
window.__longest = 0;
const mark = (into, name, plot) => {
  if (name in into) return;
  into[name] = null;
  requestAnimationFrame(() => {
    into[name] = performance.now();
    window.__top[name] = plot.getBoundingClientRect().top + window.scrollY;
  });
};
new MutationObserver((changes) => {
  for (const change of changes) for (const node of change.addedNodes) {
    if (!node.classList) continue;
    const poster = node.classList.contains("poster");
    const plotly = node.classList.contains("main-svg") || node.classList.contains("empty-plot");
    if (!poster && !plotly) continue;
    const plot = node.closest("[id^=plot-], [data-param]");
    const name = plot && (plot.dataset.param || plot.id);
    if (!name) continue;
    mark(window.__shown, name, plot);
    if (plotly) mark(window.__drawn, name, plot);
  }
}).observe(document, { subtree: true, childList: true });
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({ type: "longtask", buffered: true });
const visit = () => {
  const next = [...document.querySelectorAll("[id^=plot-], [data-param]")]
    .find((el) => !((el.dataset.param || el.id) in window.__drawn));
  if (next) next.scrollIntoView({ block: "center" });
  setTimeout(visit, 50);
};
document.addEventListener("DOMContentLoaded", visit);
"""

_VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def plot_names() -> list[str]:
    """Every plot of the study page: the fixed ones and one per parameter of SPEC."""
    fixed = [
        "plot-history",
        "plot-curves",
        "plot-importance",
        "plot-parallel",
        "plot-edf",
        "plot-timeline",
        "plot-contour",
    ]
    return fixed + list(parse_spec(SPEC).build_space())


def measure_browser(base: str, study_id: int, repeat: int) -> dict[str, float]:
    """Seconds from navigation until the first plot, and until every plot, is drawn: on a
    first visit (a fresh browser profile: nothing cached) and on a reload."""
    if not Path(CHROMIUM).exists():
        return {}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {}
    names = plot_names()
    done = f"{names!r}.every(k => window.__drawn[k] && window.__shown[k])"
    samples: dict[str, list[float]] = {}
    url = f"{base}/studies/{study_id}"

    def record(page: Any, visit: str) -> None:
        page.wait_for_function(done, timeout=300_000, polling=50)
        shown: dict[str, float] = page.evaluate("window.__shown")
        drawn: dict[str, float] = page.evaluate("window.__drawn")
        top: dict[str, float] = page.evaluate("window.__top")
        longest: float = page.evaluate("window.__longest")

        def add(what: str, ms: float) -> None:
            samples.setdefault(f"browser, {visit}: {what}", []).append(ms / 1000)

        # The plots a reader sees without scrolling (their top inside the first screen).
        screen = [name for name in shown if top[name] < _VIEWPORT["height"]]
        add("first screen's plots shown", max(shown[name] for name in screen))
        add("every plot shown", max(shown.values()))
        add("first screen's plots interactive (Plotly)", max(drawn[name] for name in screen))
        add("every plot interactive (Plotly)", max(drawn.values()))
        add("longest main-thread task", longest)

    # A server that has served the study once: a first visit is the browser's, not the
    # server's (a cold server's plot data are timed apart, as "plot data, cold").
    with httpx.Client(base_url=base, timeout=300) as c:
        for path in ("", "/plots.json", "/curves.json", "/live", "/posters"):
            c.get(f"/studies/{study_id}{path}").raise_for_status()
        c.get(f"/api/v1/studies/{study_id}/regions").raise_for_status()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=_ARGS)
        for _ in range(repeat):
            context = browser.new_context(viewport=_VIEWPORT)
            page = context.new_page()
            page.add_init_script(_MARK_PLOTS)
            page.goto(url)
            record(page, "first visit")
            page.reload()
            record(page, "reload")
            context.close()
        browser.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--browser-only", action="store_true", help="only the browser figures (no baseline)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        studies = {}
        for n in args.trials:
            start = time.perf_counter()
            studies[n] = seed_study(url, n, seed=n)
            print(f"seeded {n:,} trials in {time.perf_counter() - start:.1f} s", flush=True)
        results: dict[int, dict[str, float]] = {}
        with server(url, Path(tmp)) as base:
            for n, study_id in studies.items():
                results[n] = (
                    {} if args.browser_only else measure_http(url, base, study_id, args.repeat)
                )
                if not args.no_browser:
                    results[n].update(measure_browser(base, study_id, max(1, args.repeat // 2)))
    _print(results)


def _print(results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    baseline = "REST: ranked trials, first 50 (baseline)"
    has_baseline = baseline in results[large]
    width = max(len(k) for k in results[small])
    head = "".join(f"{f'{n:,} trials':>16}" for n in sizes)
    tail = f"{'vs baseline':>14}" if has_baseline else ""
    print(f"\n{'median time':<{width}}{head}{f'{large:,} vs {small:,}':>20}{tail}")
    for key in results[small]:
        cells = "".join(f"{results[n][key] * 1000:>13.0f} ms" for n in sizes)
        growth = results[large][key] / results[small][key]
        versus = f"{results[large][key] / results[large][baseline]:>13.1f}×" if has_baseline else ""
        print(f"{key:<{width}}{cells}{growth:>19.1f}×{versus}")
    print(f"\n'{large:,} vs {small:,}': the same request on the large study over the small one.")
    if has_baseline:
        print(
            "'vs baseline': the request over the REST API's first page of ranked trials, both"
            f" on the {large:,}-trial study."
        )


if __name__ == "__main__":
    main()
