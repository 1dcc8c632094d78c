"""Multi-threshold neuron of ECMT (numeric contract D4).

Levels are ``+lambda_pos * 2**k`` and ``-lambda_neg * 2**k`` for k = 0..levels-1. The membrane
starts at 0. Per step: ``v += x``; scan k from levels-1 down to 0, first hit wins: emit
``+lambda_pos * 2**k`` if ``v >= lambda_pos * (2**k - 1/2)``, else ``-lambda_neg * 2**k`` if
``v <= -lambda_neg * (2**k - 1/2)``; at most one spike per step; subtract what was emitted.

The spike is a signed code ``c`` in {0, ±1, ±2, ..., ±2**(levels-1)}; its value is
``c * lambda_pos`` if positive and ``c * lambda_neg`` if negative.

Integer form: ``v``, ``x`` and the lambdas are integers in input LSBs, so the half-level test
``v >= lambda * (2**k - 1/2)`` is exactly ``v >= ceil(lambda * (2**(k+1) - 1) / 2)`` (and
``v <= -ceil(...)`` on the negative side): no extra fractional membrane bit is needed for odd
lambdas (see docs/decisions.md).

Residual bound (tested): the residual ``sum(x) - sum(emitted)`` after any step is the membrane
``v`` itself. If every ``|x_t| <= X`` with ``X <= min(lambda_pos, lambda_neg) * 2**(levels-1)``
(no saturation), then ``|v| <= max(X, max(lambda_pos, lambda_neg) / 2)`` after every step: a
spike of either sign can overshoot by up to half its base threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .fixed import Format, check_int, check_running_sum
from .membrane import MembraneRange, membrane_range

__all__ = ["MTConfig", "MTResult", "mt_thresholds", "mt_neuron", "mt_neuron_float", "mt_decode"]


class MTResult(NamedTuple):
    codes: torch.Tensor  #: int64 signed codes 0, ±2**k; shape of the input (time first)
    v: torch.Tensor  #: membrane after the last step
    u: torch.Tensor | None = None  #: integrated potential before each reset (if requested)


def mt_thresholds(lambda_pos: int, lambda_neg: int, levels: int) -> tuple[list[int], list[int]]:
    """Integer firing thresholds: level k fires + if ``v >= pos[k]``, − if ``v <= neg[k]``."""
    pos = [(lambda_pos * ((2 << k) - 1) + 1) // 2 for k in range(levels)]
    neg = [-((lambda_neg * ((2 << k) - 1) + 1) // 2) for k in range(levels)]
    return pos, neg


@dataclass(frozen=True)
class MTConfig:
    """Parameters of a fixed-point MT neuron, shared by the golden model and the MT core."""

    input_format: Format
    lambda_pos: int
    lambda_neg: int
    levels: int
    time_steps: int

    def __post_init__(self):
        if not isinstance(self.input_format, Format):
            raise TypeError(f"input_format must be a Format, not {self.input_format!r}")
        check_int("levels", self.levels, minimum=1, maximum=16)
        check_int("lambda_pos", self.lambda_pos, minimum=1, maximum=1 << 40)
        check_int("lambda_neg", self.lambda_neg, minimum=1, maximum=1 << 40)
        check_int("time_steps", self.time_steps, minimum=1, maximum=1 << 20)

    @property
    def thresholds(self) -> tuple[list[int], list[int]]:
        return mt_thresholds(self.lambda_pos, self.lambda_neg, self.levels)

    def emitted(self, u: int) -> int:
        pos, neg = self.thresholds
        for k in reversed(range(self.levels)):
            if u >= pos[k]:
                return self.lambda_pos << k
            if u <= neg[k]:
                return -(self.lambda_neg << k)
        return 0

    def reset(self, u: int) -> int:
        return u - self.emitted(u)

    @property
    def breakpoints(self) -> list[int]:
        """The first potential of each firing region of :meth:`reset` (golden.membrane): the
        positive thresholds, and one above each negative one."""
        pos, neg = self.thresholds
        return pos + [n + 1 for n in neg]

    @property
    def membrane_range(self) -> MembraneRange:
        return membrane_range(self.reset, self.breakpoints, v_init_lo=0, v_init_hi=0,
                              x_lo=self.input_format.min_int, x_hi=self.input_format.max_int,
                              time_steps=self.time_steps)

    @property
    def membrane_format(self) -> Format:
        """The narrowest signed format holding every reachable potential and every threshold."""
        r = self.membrane_range
        pos, neg = self.thresholds
        return Format.for_range(min(r.lo, neg[-1]), max(r.hi, pos[-1]), self.input_format.frac,
                                what=f"the membrane (input {self.input_format}, time_steps = "
                                     f"{self.time_steps}, levels = {self.levels})")


def mt_decode(codes: torch.Tensor, lambda_pos, lambda_neg) -> torch.Tensor:
    """Value carried by each code: ``c * lambda_pos`` if ``c > 0`` else ``c * lambda_neg``."""
    return torch.where(codes > 0, codes * lambda_pos, codes * lambda_neg)


def _select(v: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Signed code of the level that fires; thresholds rise with k, so the number of levels
    reached is the highest hit plus one."""
    n_pos = torch.searchsorted(pos, v, right=True)  # how many of pos are <= v
    n_neg = torch.searchsorted(-neg, -v, right=True)  # how many of neg are >= v
    one = torch.ones(v.shape, dtype=torch.int64)
    return torch.where(n_pos > 0, one << (n_pos - 1).clamp(min=0),
                       torch.where(n_neg > 0, -(one << (n_neg - 1).clamp(min=0)), 0))


def mt_neuron(x: torch.Tensor, lambda_pos: int, lambda_neg: int, levels: int, *,
              record_potential: bool = False) -> MTResult:
    """Run MT neurons on integer input ``x`` of shape ``(T, ...)``; vectorised over ``...``."""
    check_int("levels", levels, minimum=1, maximum=62)
    check_int("lambda_pos", lambda_pos, minimum=1)
    check_int("lambda_neg", lambda_neg, minimum=1)
    x = torch.as_tensor(x)
    if x.is_floating_point():
        raise TypeError("x must be an integer tensor; use mt_neuron_float for real values")
    x = x.to(torch.int64)
    # A step subtracts at most the top level, λ·2**(levels - 1).
    check_running_sum("x", x, max(lambda_pos, lambda_neg) << (levels - 1))
    pos, neg = mt_thresholds(lambda_pos, lambda_neg, levels)
    pos_t = torch.tensor(pos, dtype=torch.int64)
    neg_t = torch.tensor(neg, dtype=torch.int64)
    v = torch.zeros(x.shape[1:], dtype=torch.int64)
    codes = torch.empty_like(x)
    u_trace = torch.empty_like(x) if record_potential else None
    for t in range(x.shape[0]):
        v += x[t]
        if u_trace is not None:
            u_trace[t] = v
        code = _select(v, pos_t, neg_t)
        v -= mt_decode(code, lambda_pos, lambda_neg)
        codes[t] = code
    return MTResult(codes, v, u_trace)


def mt_neuron_float(x: torch.Tensor, lambda_pos: float, lambda_neg: float, levels: int) -> MTResult:
    """Real-valued twin of :func:`mt_neuron` (for accuracy measurements only)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    half_levels = torch.tensor([(1 << k) - 0.5 for k in range(levels)], dtype=torch.float64)
    pos_t, neg_t = lambda_pos * half_levels, -lambda_neg * half_levels
    v = torch.zeros(x.shape[1:], dtype=torch.float64)
    codes = torch.empty_like(x)
    for t in range(x.shape[0]):
        v = v + x[t]
        code = _select(v, pos_t, neg_t).to(torch.float64)
        v = v - mt_decode(code, lambda_pos, lambda_neg)
        codes[t] = code
    return MTResult(codes, v)
