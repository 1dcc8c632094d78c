"""Training of SI-exp tables (h, d, T), quantisation-aware.

Three stages, deterministic for a seed (budgets are counted in restarts and evaluations, never
in wall-clock time):

1. **Float search.** CMA-ES (the ``cma`` package) over (h, T) ∈ R^(2K) in coordinates
   normalised to the range. For each candidate the spikes are fixed, so the best d is a linear
   least-squares solve and the objective is the exact MSE of the float neuron on the training
   grid (no surrogate gradient: the spike function's discontinuities are what the search must
   place). Restarts alternate between

   * *global* runs from a fresh start (random, or a thermometer-like structure: decreasing
     thresholds with positive h), with the population growing IPOP-style (×2 each global
     restart, cycling back after ``max_pop_doublings``), and
   * *local* runs from the best solution so far with a small step size, after re-initialising
     its dead steps (steps that never fire, and all but one of the steps that always fire:
     they only add a constant).

2. **Quantisation.** The best few float solutions are rounded to the input format; the spike
   matrix of the *integer* model on the full evaluation grid gives d by least squares, rounded
   to the output format. The best integer candidate goes on.

3. **Integer polish** on the exact MSE of the integer model (full grid, d re-solved and
   rounded): batched coordinate line searches over a ladder of steps ±1, ±2, ±4, … LSBs for
   every h and T entry, joint moves of (h_k, T_k) pairs, then ``kicks`` rounds of iterated local
   search (random perturbation of one to three entries, single-entry polish, keep and fully
   polish if better).

The training grid is ``points`` evenly spaced reals of [lo, hi] (10,000 as in the paper), the
same grid :func:`golden.si_exp.evaluate_table` measures on; the float search uses every
``points // train_points``-th of them.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import numpy as np
import torch

from .fixed import Format, check_int
from .si_exp import TARGETS, SIExpTable, evaluate_table

__all__ = ["fit_si_exp", "integer_mse"]


# ---------------------------------------------------------------------------------------------
# Shared numerics

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
    """Least-squares d for each spike matrix in the batch (P, N, K), and the resulting MSE.

    Solved through the K×K normal equations with a pseudo-inverse (dead steps make them
    singular); float64 keeps this exact enough for MSEs far below the targets here."""
    N = Z.shape[1]
    G = Z.transpose(1, 2) @ Z  # (P, K, K)
    b = (Z.transpose(1, 2) @ y.unsqueeze(-1))  # (P, K, 1)
    d = (torch.linalg.pinv(G, hermitian=True) @ b).squeeze(-1)
    r = (Z @ d.unsqueeze(-1)).squeeze(-1) - y
    mse = (r ** 2).sum(dim=1) / N
    return d, mse


class _IntegerObjective:
    """MSE of the integer model for a batch of integer (h, T), with d solved and rounded."""

    def __init__(self, xq: torch.Tensor, y: torch.Tensor, lo: int, hi: int, out_scale: float):
        self.v0 = xq.clamp(lo, hi).to(torch.float64)
        self.y = y
        self.out_scale = out_scale
        self.calls = 0

    def batch(self, H: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H, T (P, K) integer-valued float64 -> (mse (P,), integer d (P, K))."""
        self.calls += H.shape[0]
        Z = _spike_matrix(self.v0.expand(H.shape[0], -1), H, T)
        d, _ = _best_d(Z, self.y)
        dq = torch.round(d * self.out_scale)
        out = (Z @ dq.unsqueeze(-1)).squeeze(-1) / self.out_scale
        return ((out - self.y) ** 2).mean(dim=1), dq

    def __call__(self, h, T) -> tuple[float, list[int]]:
        f, dq = self.batch(torch.tensor([h], dtype=torch.float64),
                           torch.tensor([T], dtype=torch.float64))
        return float(f[0]), [int(v) for v in dq[0]]


def integer_mse(table: SIExpTable, points: int = 10_000,
                target: Callable | None = None) -> float:
    """MSE of ``table``'s integer model on the evaluation grid, computed the trainer's way
    (spike matrix times d); equals :func:`golden.si_exp.evaluate_table`'s ``mse`` (``target``
    None is the table's own)."""
    if target is None:
        target = table.target_function()
    lo, hi = table.range
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    v = table.input_format.quantise(x).clamp(table.lo, table.hi).to(torch.float64)
    Z = _spike_matrix(v.unsqueeze(0), torch.tensor([table.h], dtype=torch.float64),
                      torch.tensor([table.T], dtype=torch.float64))[0]
    out = Z @ torch.tensor(table.d, dtype=torch.float64) * table.output_format.lsb
    return float(((out - target(x)) ** 2).mean())


# ---------------------------------------------------------------------------------------------
# Argument checks

def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, not {value!r}")
    return float(value)


def _check_args(K, lo, hi, seed, restarts, evaluations, points, train_points, kicks,
                input_format, output_frac, target):
    check_int("K", K, minimum=1, maximum=32)
    lo, hi = _check_real("lo", lo), _check_real("hi", hi)
    if not lo < hi:
        raise ValueError(f"range must have lo < hi, not [{lo:g}, {hi:g}]")
    check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    check_int("restarts", restarts, minimum=1, maximum=100_000)
    check_int("evaluations", evaluations, minimum=100, maximum=10_000_000)
    check_int("points", points, minimum=2, maximum=1_000_000)
    check_int("train_points", train_points, minimum=2, maximum=points)
    check_int("kicks", kicks, minimum=0, maximum=1_000_000)
    check_int("output_frac", output_frac, minimum=0, maximum=40)
    if not isinstance(input_format, Format):
        raise TypeError(f"input_format must be a golden.fixed.Format, not {input_format!r}")
    for name, value in (("lo", lo), ("hi", hi)):
        if not input_format.min <= value <= input_format.max:
            raise ValueError(f"{name} must lie in the input format's range "
                             f"[{input_format.min:g}, {input_format.max:g}], not {value:g}")
    lo_q, hi_q = input_format.quantise_scalar("lo", lo), input_format.quantise_scalar("hi", hi)
    if not lo_q < hi_q:
        raise ValueError(f"range [{lo:g}, {hi:g}] holds one input of {input_format}")
    if hi_q - lo_q > 1 << 20:
        raise ValueError(f"range [{lo:g}, {hi:g}] holds {hi_q - lo_q + 1} inputs of "
                         f"{input_format}; a table covers at most 2**20 + 1")
    if not callable(target):
        raise TypeError(f"target must be a callable on float64 tensors, not {target!r}")
    y = target(torch.linspace(lo, hi, 3, dtype=torch.float64))
    if not isinstance(y, torch.Tensor) or y.shape != (3,) or not torch.isfinite(y).all():
        raise ValueError("target must map a float64 tensor to a finite tensor of the same shape")
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Trainer

def fit_si_exp(K: int, lo: float, hi: float, *, seed: int = 0, restarts: int = 40,
               evaluations: int = 6000, kicks: int = 10, points: int = 10_000,
               train_points: int = 2500, input_format: Format = Format(16, 12),
               output_frac: int = 14, target: Callable = torch.exp,
               target_name: str | None = None, command: str = "",
               progress: bool = True) -> SIExpTable:
    """Train an SI-exp table for ``target`` on [lo, hi] with K steps (see module docstring).

    ``restarts`` CMA-ES runs of at most ``evaluations`` float evaluations each (scaled by the
    population growth of IPOP restarts), then ``kicks`` iterated-local-search rounds on the
    integer model. The range is taken on the input format's grid (lo and hi rounded to it), as
    the table stores it. ``target_name`` is the name recorded for ``target``: found in
    :data:`golden.si_exp.TARGETS` when None. The result's ``info`` records target, seed,
    budgets, the command, the float MSE and the measured error of the integer model
    (:func:`golden.si_exp.evaluate_table`)."""
    import cma  # imported here: only training needs it

    lo, hi = _check_args(K, lo, hi, seed, restarts, evaluations, points, train_points, kicks,
                         input_format, output_frac, target)
    target_name = _target_name(target, target_name)
    lo_q, hi_q = input_format.quantise_scalar("lo", lo), input_format.quantise_scalar("hi", hi)
    on_grid = float(input_format.to_float(lo_q)), float(input_format.to_float(hi_q))
    if on_grid != (lo, hi):
        _note(progress, f"range [{lo:g}, {hi:g}] taken on the input grid: "
                        f"[{on_grid[0]:.10g}, {on_grid[1]:.10g}]")
    lo, hi = on_grid
    started = time.monotonic()
    rng = np.random.default_rng(seed)

    x_all = torch.linspace(lo, hi, points, dtype=torch.float64)
    y_all = target(x_all).to(torch.float64)
    stride = max(1, points // train_points)
    x_train, y_train = x_all[::stride], y_all[::stride]
    span = hi - lo

    def unpack(p: torch.Tensor):
        return p[:, :K] * span, lo + p[:, K:] * span

    def batch_mse(solutions) -> list[float]:
        p = torch.tensor(np.asarray(solutions), dtype=torch.float64)
        h, T = unpack(p)
        Z = _spike_matrix(x_train.unsqueeze(0).expand(len(p), -1), h, T)
        return _best_d(Z, y_train)[1].tolist()

    def firing(p: np.ndarray) -> np.ndarray:
        h, T = unpack(torch.tensor(p[None], dtype=torch.float64))
        return _spike_matrix(x_train.unsqueeze(0), h, T)[0].mean(dim=0).numpy()

    # ---- Stage 1: float search ---------------------------------------------------------------
    elite: list[tuple[float, np.ndarray]] = []  # best few distinct float solutions

    def remember(f: float, p: np.ndarray):
        elite.append((f, p.copy()))
        elite.sort(key=lambda e: e[0])
        del elite[4:]

    base_pop = 4 + int(3 * math.log(2 * K))
    n_global = 0
    bar = _progress_bar(restarts, f"SI-exp K={K} [{lo:g}, {hi:g}]", progress)
    for r in range(restarts):
        local = r % 2 == 1 and elite
        if local:
            x0 = _revive_dead_steps(elite[0][1], firing(elite[0][1]), rng, K)
            sigma, pop = 0.03, base_pop
        else:
            x0 = _initial_point(rng, K, structured=n_global % 3 != 0)
            sigma, pop = 0.15, base_pop << (n_global % 4)
            n_global += 1
        es = cma.CMAEvolutionStrategy(x0, sigma, {
            "verbose": -9, "seed": int(rng.integers(1, 2**31 - 1)), "popsize": pop,
            "maxfevals": evaluations * pop // base_pop, "tolflatfitness": 10,
            "tolfun": 1e-12, "tolfunhist": 1e-12})
        while not es.stop():
            solutions = es.ask()
            es.tell(solutions, batch_mse(solutions))
        remember(float(es.result.fbest), np.array(es.result.xbest))
        bar(f"best float MSE {elite[0][0]:.3e}")
    best_float = elite[0][0]

    # ---- Stage 2: quantisation ---------------------------------------------------------------
    xq = input_format.quantise(x_all)
    objective = _IntegerObjective(xq, y_all, lo_q, hi_q, 2.0 ** output_frac)
    candidates = []
    for _, p in elite:
        h, T = unpack(torch.tensor(p[None], dtype=torch.float64))
        h = [int(v) for v in input_format.quantise(h[0])]
        T = [int(v) for v in input_format.quantise(T[0])]
        candidates.append((objective(h, T)[0], h, T))
    candidates.sort(key=lambda c: c[0])
    f, h, T = candidates[0]
    _note(progress, f"quantised: integer MSE {f:.3e} (float {best_float:.3e})")

    # ---- Stage 3: integer polish -------------------------------------------------------------
    ladder = _ladder(hi_q - lo_q)
    f, h, T = _polish(objective, f, h, T, ladder)
    _note(progress, f"polished: integer MSE {f:.3e}")
    kick_bar = _progress_bar(kicks, "integer kicks", progress and kicks > 0)
    for _ in range(kicks):
        h2, T2 = list(h), list(T)
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(0, K))
            scale = int(ladder[int(rng.integers(0, max(1, len(ladder) - 3)))])
            if rng.random() < 0.5:
                T2[k] += int(rng.integers(-scale, scale + 1))
            else:
                h2[k] += int(rng.integers(-scale, scale + 1))
        f2, _ = objective(h2, T2)
        f2, h2, T2 = _polish(objective, f2, h2, T2, ladder, pairs=False)
        if f2 < f:
            f, h, T = _polish(objective, f2, h2, T2, ladder)
        kick_bar(f"integer MSE {f:.3e}")
    f, d = objective(h, T)
    _note(progress, f"final: integer MSE {f:.3e}")

    table = SIExpTable(input_format, Format(62, output_frac), lo_q, hi_q,
                       tuple(h), tuple(d), tuple(T))
    table = _fit_output_format(table)
    metrics = evaluate_table(table, points, target)
    # Consistency: the trainer's objective is the shipped integer model's error.
    if not math.isclose(metrics["mse"], f, rel_tol=1e-6, abs_tol=1e-15):
        raise AssertionError(f"integer objective {f!r} disagrees with evaluate_table "
                             f"{metrics['mse']!r}")
    info = {"target": target_name, "seed": seed, "restarts": restarts,
            "evaluations": evaluations, "kicks": kicks, "points": points,
            "train_points": train_points,
            "command": command, "float_mse": best_float,
            "integer_evaluations": objective.calls,
            "training_seconds": round(time.monotonic() - started, 1), "measured": metrics}
    return SIExpTable(table.input_format, table.output_format, table.lo, table.hi, table.h,
                      table.d, table.T, info)


def _target_name(target: Callable, name: str | None) -> str:
    known = [key for key, fn in TARGETS.items() if fn is target]
    if name is None:
        if not known:
            raise ValueError("target_name must name a target that is not one of "
                             f"{', '.join(TARGETS)}")
        return known[0]
    if not isinstance(name, str) or not name:
        raise TypeError(f"target_name must be a non-empty string, not {name!r}")
    if known and name not in known or not known and name in TARGETS:
        raise ValueError(f"target_name {name!r} does not name this target")
    return name


def _initial_point(rng: np.random.Generator, K: int, structured: bool) -> np.ndarray:
    """A start in normalised coordinates (h / span, (T - lo) / span)."""
    if not structured:
        return np.concatenate([rng.uniform(-0.5, 0.5, K), rng.uniform(0.0, 1.0, K)])
    # Thermometer-like coarse steps with decreasing thresholds, either each resetting v to the
    # bottom segment ("reset") or each subtracting one segment width so that v cascades down
    # ("cascade"), followed by binary-like fine steps on the bottom segment; jittered.
    m = int(rng.integers(max(1, K // 3), max(2, (2 * K) // 3 + 1)))
    w = 1.0 / (m + 1)
    T = [1.0 - (i + 1) * w for i in range(m)]
    h = list(T) if rng.random() < 0.5 else [w] * m
    for i in range(K - m):
        step = w / 2 ** (i + 1)
        T.append(step)
        h.append(step)
    p = np.concatenate([np.array(h), np.array(T)])
    return p + rng.normal(0.0, 0.02, 2 * K)


def _revive_dead_steps(p: np.ndarray, rates: np.ndarray, rng: np.random.Generator,
                       K: int) -> np.ndarray:
    """Re-initialise steps that never fire, and all but the first always-firing step."""
    p = p.copy()
    always_seen = False
    for k in range(K):
        dead = rates[k] == 0.0
        if rates[k] == 1.0:
            dead, always_seen = always_seen, True
        if dead:
            p[k] = rng.uniform(0.0, 0.3)
            p[K + k] = rng.uniform(0.0, 1.0)
    return p


def _ladder(span: int) -> list[int]:
    steps, s = [], 1
    while s <= span:
        steps.append(s)
        s *= 2
    return steps


def _polish(objective: _IntegerObjective, f: float, h: list[int], T: list[int],
            ladder: list[int], pairs: bool = True) -> tuple[float, list[int], list[int]]:
    """Batched coordinate line searches (single entries, then (h_k, T_k) pairs if ``pairs``)
    until no move over the step ladder lowers the integer MSE."""
    K = len(h)
    moves = [s * sign for s in ladder for sign in (1, -1)]
    pair_moves = [(a, b) for a in (-2, -1, 0, 1, 2) for b in (-2, -1, 0, 1, 2) if a and b]
    improved = True
    while improved:
        improved = False
        for which in ("T", "h", "pair") if pairs else ("T", "h"):
            for k in range(K):
                base_h = torch.tensor(h, dtype=torch.float64)
                base_T = torch.tensor(T, dtype=torch.float64)
                if which == "pair":
                    deltas = [(a * s, b * s) for s in ladder[:6] for a, b in pair_moves]
                else:
                    deltas = moves
                H = base_h.repeat(len(deltas), 1)
                TT = base_T.repeat(len(deltas), 1)
                for i, delta in enumerate(deltas):
                    if which == "h":
                        H[i, k] += delta
                    elif which == "T":
                        TT[i, k] += delta
                    else:
                        H[i, k] += delta[0]
                        TT[i, k] += delta[1]
                trial, _ = objective.batch(H, TT)
                i = int(torch.argmin(trial))
                if float(trial[i]) < f * (1 - 1e-12):
                    f = float(trial[i])
                    h = [int(v) for v in H[i]]
                    T = [int(v) for v in TT[i]]
                    improved = True
    return f, h, T


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
    if not sys.stderr.isatty():  # a log file: a line per tenth, not carriage-return redraws
        done = [0]

        def line(message: str):
            done[0] += 1
            if done[0] == total or (10 * done[0]) // total != (10 * (done[0] - 1)) // total:
                _note(True, f"{label} {done[0]}/{total}: {message}")
        return line
    from tqdm import tqdm
    bar = tqdm(total=total, desc=label, file=sys.stderr, leave=True)

    def advance(message: str):
        bar.set_postfix_str(message)
        bar.update(1)
        if bar.n >= total:
            bar.close()
    return advance
