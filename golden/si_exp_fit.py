"""Training of SI-exp tables (h, d, T), quantisation-aware.

Three stages, deterministic for a seed:

1. **Float search.** CMA-ES (the ``cma`` package) over (h, T) ∈ R^(2K), from random starts;
   for each candidate the spikes are fixed, so the best d is a linear least-squares solve and
   the objective is the exact MSE of the float neuron on the training grid (no surrogate
   gradient: the spike function's discontinuities are what the search must place).
2. **Quantisation.** h and T are rounded to the input format; the spike matrix of the *integer*
   model on the quantised grid gives d by least squares, rounded to the output format.
3. **Integer polish.** Coordinate search on the integer h and T (steps of 1, 2, 4, ... LSBs),
   re-solving d each time, accepting only moves that lower the MSE of the integer model: the
   error that counts is the shipped integer model's.

The training grid is ``points`` evenly spaced reals of [lo, hi] (10,000 as in the paper), the
same grid :func:`golden.si_exp.evaluate_table` measures on.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import numpy as np
import torch

from .fixed import Format, check_int
from .si_exp import SIExpTable, evaluate_table

__all__ = ["fit_si_exp"]


def _spike_matrix(v: torch.Tensor, h: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Spikes of a batch of neurons: v (P, N), h and T (P, K) -> Z (P, N, K)."""
    P, N = v.shape
    K = h.shape[1]
    Z = torch.empty(P, N, K, dtype=v.dtype)
    for t in range(K):
        z = (v >= T[:, t:t + 1]).to(v.dtype)
        Z[:, :, t] = z
        v = v - h[:, t:t + 1] * z
    return Z


def _best_d(Z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares d for each spike matrix in the batch, and the resulting MSE."""
    Y = y.expand(Z.shape[0], -1).unsqueeze(-1)
    d = torch.linalg.lstsq(Z, Y).solution
    mse = ((Z @ d - Y) ** 2).mean(dim=(1, 2))
    return d.squeeze(-1), mse


class _IntegerObjective:
    """MSE of the integer model for integer (h, T), with d solved and rounded."""

    def __init__(self, xq: torch.Tensor, y: torch.Tensor, lo: int, hi: int, out_scale: float):
        self.v0 = xq.clamp(lo, hi).to(torch.float64).unsqueeze(0)
        self.y = y
        self.out_scale = out_scale

    def __call__(self, h: list[int], T: list[int]) -> tuple[float, list[int]]:
        Z = _spike_matrix(self.v0, torch.tensor([h], dtype=torch.float64),
                          torch.tensor([T], dtype=torch.float64))
        d, _ = _best_d(Z, self.y)
        dq = torch.round(d[0] * self.out_scale)
        out = (Z[0] @ dq) / self.out_scale
        return float(((out - self.y) ** 2).mean()), [int(v) for v in dq]


def fit_si_exp(K: int, lo: float, hi: float, *, seed: int = 0, restarts: int = 40,
               evaluations: int = 6000, points: int = 10_000, train_points: int = 2500,
               input_format: Format = Format(16, 12), output_frac: int = 14,
               target: Callable = torch.exp, target_name: str = "exp", command: str = "",
               progress: bool = True) -> SIExpTable:
    """Train an SI-exp table for ``target`` on [lo, hi] with K steps (see module docstring)."""
    import cma  # imported here: only training needs it

    check_int("K", K, minimum=1, maximum=32)
    check_int("restarts", restarts, minimum=1)
    check_int("seed", seed, minimum=0)
    if not lo < hi:
        raise ValueError(f"range must have lo < hi, not [{lo}, {hi}]")
    lo_q, hi_q = input_format.quantise_scalar("lo", lo), input_format.quantise_scalar("hi", hi)
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    x_all = torch.linspace(lo, hi, points, dtype=torch.float64)
    y_all = target(x_all)
    stride = max(1, points // train_points)
    x_train, y_train = x_all[::stride], y_all[::stride]
    span = hi - lo

    def batch_mse(solutions) -> list[float]:
        p = torch.tensor(np.asarray(solutions), dtype=torch.float64)
        h, T = p[:, :K] * span, lo + p[:, K:] * span
        Z = _spike_matrix(x_train.unsqueeze(0).expand(len(p), -1), h, T)
        return _best_d(Z, y_train)[1].tolist()

    # Stage 1: CMA-ES restarts in normalised coordinates (h / span, (T - lo) / span).
    best_f, best_p = math.inf, None
    bar = _progress_bar(restarts, f"SI-exp K={K} [{lo:g}, {hi:g}]", progress)
    for r in range(restarts):
        x0 = np.concatenate([rng.uniform(-0.5, 0.5, K), rng.uniform(0.0, 1.0, K)])
        es = cma.CMAEvolutionStrategy(x0, 0.15, {
            "verbose": -9, "seed": int(rng.integers(1, 2**31 - 1)), "maxfevals": evaluations})
        while not es.stop():
            solutions = es.ask()
            es.tell(solutions, batch_mse(solutions))
        if es.result.fbest < best_f:
            best_f, best_p = es.result.fbest, np.array(es.result.xbest)
        bar(f"best float MSE {best_f:.3e}")

    # Stage 2: quantise h and T; d from the integer model's spikes.
    xq = input_format.quantise(x_all)
    objective = _IntegerObjective(xq, y_all, lo_q, hi_q, 2.0 ** output_frac)
    h = [int(v) for v in input_format.quantise(torch.tensor(best_p[:K] * span))]
    T = [int(v) for v in input_format.quantise(torch.tensor(lo + best_p[K:] * span))]
    f, d = objective(h, T)
    _note(progress, f"quantised: integer MSE {f:.3e} (float {best_f:.3e})")

    # Stage 3: coordinate polish of the integer tables on the exact objective.
    step = 1 << max(0, input_format.frac - 4)
    while step >= 1:
        improved = True
        while improved:
            improved = False
            for table in (h, T):
                for k in range(K):
                    for delta in (step, -step):
                        table[k] += delta
                        trial, trial_d = objective(h, T)
                        if trial < f:
                            f, d, improved = trial, trial_d, True
                        else:
                            table[k] -= delta
        step //= 2
    _note(progress, f"polished: integer MSE {f:.3e}")

    table = SIExpTable(input_format, Format(output_frac + 4, output_frac), lo_q, hi_q,
                       tuple(h), tuple(d), tuple(T))
    table = _fit_output_format(table)
    metrics = evaluate_table(table, points, target)
    info = {"target": target_name, "seed": seed, "restarts": restarts,
            "evaluations_per_restart": evaluations, "train_points": len(x_train),
            "command": command, "float_mse": best_f,
            "training_seconds": round(time.monotonic() - started, 1), "measured": metrics}
    return SIExpTable(table.input_format, table.output_format, table.lo, table.hi, table.h,
                      table.d, table.T, info)


def _fit_output_format(table: SIExpTable) -> SIExpTable:
    """Widen or narrow the output format to the narrowest that holds every accumulator value
    and every d entry."""
    acc = table.accumulator_format
    width = max(acc.width, Format.for_range(min(table.d), max(table.d)).width)
    return SIExpTable(table.input_format, Format(width, table.output_format.frac), table.lo,
                      table.hi, table.h, table.d, table.T)


def _note(progress: bool, message: str) -> None:
    if progress:
        print(f"si-exp fit: {message}", file=sys.stderr, flush=True)


def _progress_bar(total: int, label: str, enabled: bool):
    if not enabled:
        return lambda message: None
    from tqdm import tqdm
    bar = tqdm(total=total, desc=label, file=sys.stderr, leave=True)

    def advance(message: str):
        bar.set_postfix_str(message)
        bar.update(1)
        if bar.n >= total:
            bar.close()
    return advance
