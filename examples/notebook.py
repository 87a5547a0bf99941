"""A notebook's cells, as a script: a study driven from Python, its trials run in this process.

Start a server first (``hpsearch server``), then ``python examples/notebook.py``; it reads
HPSEARCH_SERVER and HPSEARCH_TOKEN like the CLI. docs/python.md walks through each cell.
"""

from __future__ import annotations

import math

import hpsearch

# %% A study: the same spec as a YAML file's. Its entry point names this function, so a
# worker elsewhere serves it only if started with --allow examples.notebook:train.
SPEC = {
    "name": "notebook-quadratic",
    "objective": {"metric": "loss", "direction": "minimize"},
    "constraints": [{"metric": "steps_used", "op": "<=", "threshold": 40}],
    "space": {
        "lr": {"type": "float", "low": 0.001, "high": 1.0, "scale": "log"},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    },
    "sampler": {"kind": "random", "seed": 0},
    "budget": {"max_trials": 12, "parallelism": 2},
    "task": {"trainer": "custom", "entry_point": "examples.notebook:train", "epochs": 50},
}


# %% The training function: the same one a worker runs for a custom entry point.
def train(trial: hpsearch.TrialLike) -> dict[str, float]:
    """Gradient descent with momentum on (x - 3)², one report per step."""
    x, velocity, loss = 0.0, 0.0, math.inf
    steps = 0
    for steps in range(1, 51):
        velocity = trial.params["momentum"] * velocity - trial.params["lr"] * 2 * (x - 3)
        x += velocity
        loss = (x - 3) ** 2
        if trial.report(steps, loss=loss) or loss < 1e-6:
            break
    return {"loss": loss, "steps_used": steps}


def main() -> None:
    hs = hpsearch.connect()  # HPSEARCH_SERVER, HPSEARCH_TOKEN
    study = hs.create_study(SPEC)
    print(f"{study}: {hs.client.server}/studies/{study.id}")

    # %% A guess of our own first; the momentum is left to the sampler.
    study.enqueue({"lr": 0.1})

    # %% Run the trials here, two at a time.
    study.optimize(train, n_trials=8, n_jobs=2)

    # %% Or one by one: ask, train, tell.
    trial = study.ask()
    study.tell(trial, train(trial))

    # %% The results.
    df = study.trials_dataframe()
    ended = df[df["state"] != "queued"]
    print(ended[["number", "state", "value", "params_lr", "params_momentum", "broken"]])
    best = study.best_trial
    assert best is not None
    print(f"best: study {study.id} trial {best.number}, loss {best.value:.3g}, {best.params}")

    # %% More trials for the study; then run the rest of its budget.
    study.extend(2)
    study.optimize(train)
    print(f"{study}: {study.info['state']}, {len(study.trials())} trials")


if __name__ == "__main__":
    main()
