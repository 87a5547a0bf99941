"""Milliseconds per training step of K MLPs (784-64-64-10, batch 64, plain SGD), three ways:
K separate models stepped in a loop (the baseline), ``torch.func`` (``stack_module_state`` +
``vmap(grad(functional_call))``), and the packed network of ``workers.training.packed_layers``
(one ``bmm`` per layer). It decides which engine the packed trainer uses.

    .venv/bin/python bench/packed_step.py --packs 1 4 16 64 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.training.packed_layers import PackedNetwork

FEATURES, HIDDEN, CLASSES, BATCH = 784, 64, 10, 64


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(FEATURES, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, CLASSES),
    )


def separate(k: int, x: Tensor, y: Tensor) -> Callable[[], None]:
    models = [mlp() for _ in range(k)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01) for m in models]

    def step() -> None:
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            loss = functional.cross_entropy(model(x[i]), y[i])
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()

    return step


def functorch(k: int, x: Tensor, y: Tensor) -> Callable[[], None]:
    models = [mlp() for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    lr = torch.full((k,), 0.01)

    def loss(p: dict[str, Tensor], b: dict[str, Tensor], xs: Tensor, ys: Tensor) -> Tensor:
        return functional.cross_entropy(functional_call(base, (p, b), (xs,)), ys)

    gradients = vmap(grad(loss))

    def step() -> None:
        g = gradients(params, buffers, x, y)
        with torch.no_grad():
            for name, value in params.items():
                value.addcmul_(g[name], -lr.view(-1, *([1] * (value.ndim - 1))))

    return step


def packed(k: int, x: Tensor, y: Tensor) -> Callable[[], None]:
    network = PackedNetwork([mlp() for _ in range(k)], [torch.Generator() for _ in range(k)])
    lr = torch.full((k,), 0.01)

    def step() -> None:
        logits = network.forward(x, shared=False, training=True)
        losses = functional.cross_entropy(
            logits.reshape(-1, CLASSES), y.reshape(-1), reduction="none"
        )
        for p in network.store.params.values():
            p.grad = None
        torch.autograd.backward(losses.view(k, -1).mean(1).sum())
        with torch.no_grad():
            for p in network.store.params.values():
                assert p.grad is not None
                p.addcmul_(p.grad, -lr.view(-1, *([1] * (p.ndim - 1))))

    return step


def timed(step: Callable[[], None], seconds: float) -> float:
    for _ in range(3):
        step()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        n += 1
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"ms per step of K MLPs, {args.threads} thread(s), torch {torch.__version__}")
    print(
        f"{'K':>4} {'separate':>10} {'torch.func':>11} {'packed bmm':>11}  bmm vs loop  bmm vs func"
    )
    for k in args.packs:
        x, y = torch.randn(k, BATCH, FEATURES), torch.randint(0, CLASSES, (k, BATCH))
        times = [timed(make(k, x, y), args.seconds) for make in (separate, functorch, packed)]
        loop, func, bmm = (1000 * t for t in times)
        ratios = f"×{loop / bmm:>9.2f}  ×{func / bmm:>9.2f}"
        print(f"{k:>4} {loop:>10.2f} {func:>11.2f} {bmm:>11.2f}  {ratios}")


if __name__ == "__main__":
    main()
