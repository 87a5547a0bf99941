"""A stand-in for a user's training script, for the command trainer's tests.

It reports ``dev_accuracy = quality * step / steps`` for steps 1..``--steps``, ``--pause``
seconds apart, keeps its progress in ``$HPSEARCH_CHECKPOINT_DIR/state.json`` (written before
each step's line, atomically) and resumes from it. ``--mode``: ``plain`` (JSON lines, no
hpsearch import), ``script`` (through ``hpsearch.script``: stops when told), ``stubborn``
(ignores SIGTERM: only SIGKILL ends it), ``crash`` (raises after step 1). ``--hold-at K``:
a first run (nothing to resume) stops making progress after step K until it is killed.
``--pidfile``: where to write its process id.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quality", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--mode", default="plain")
    p.add_argument("--hold-at", type=int, default=0)
    p.add_argument("--pidfile", default=None)
    args = p.parse_args()
    if args.pidfile:
        Path(args.pidfile).write_text(str(os.getpid()))
    if args.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    folder = Path(os.environ.get("HPSEARCH_CHECKPOINT_DIR", "."))
    state = folder / "state.json"
    resumed = state.exists()
    first = json.loads(state.read_text())["step"] + 1 if resumed else 1
    print(f"starting at step {first} at {time.time()}", file=sys.stderr)
    for step in range(first, args.steps + 1):
        time.sleep(args.pause)
        tmp = folder / "state.tmp"
        tmp.write_text(json.dumps({"step": step}))
        tmp.replace(state)
        accuracy = args.quality * step / args.steps
        if args.mode == "script":
            from hpsearch import script

            if script.report(step, dev_accuracy=accuracy):
                print(f"told to stop after step {step} at {time.time()}", file=sys.stderr)
                return
        else:
            print(json.dumps({"step": step, "dev_accuracy": accuracy}), flush=True)
        if args.mode == "crash":
            print(1 / 0)
        if args.hold_at == step and not resumed:
            while True:
                time.sleep(0.05)
    print(json.dumps({"final": True, "latency_ms": 3.5}))


if __name__ == "__main__":
    main()
