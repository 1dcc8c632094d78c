"""Integrate-and-fire neuron with reset by subtraction (numeric contract D3).

Per step: ``v += x``; ``s = v >= threshold``; ``v -= threshold * s``. The membrane starts at
``v_init`` (default ``threshold // 2``: with it the spike count over T steps of inputs in
``[0, threshold]`` is ``floor((sum(x) + v_init) / threshold)``, i.e. the coded rate rounded half
up). All values are integers in units of the input format's LSB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .fixed import Format, check_int, check_running_sum
from .membrane import MembraneRange, membrane_range

__all__ = ["IFConfig", "IFResult", "if_neuron", "if_neuron_float"]


class IFResult(NamedTuple):
    spikes: torch.Tensor  #: int64 0/1, shape of the input (time first)
    v: torch.Tensor  #: membrane after the last step
    u: torch.Tensor | None = None  #: integrated potential before each reset (if requested)


@dataclass(frozen=True)
class IFConfig:
    """Parameters of a fixed-point IF neuron, shared by the golden model and the IF core.

    ``threshold`` and ``v_init`` are integers in units of the input format's LSB.
    ``time_steps`` (T) is how many steps a sample lasts; it bounds the membrane range.
    """

    input_format: Format
    threshold: int
    time_steps: int
    v_init: int | None = None

    def __post_init__(self):
        if not isinstance(self.input_format, Format):
            raise TypeError(f"input_format must be a Format, not {self.input_format!r}")
        check_int("threshold", self.threshold, minimum=1, maximum=(1 << 48))
        check_int("time_steps", self.time_steps, minimum=1, maximum=1 << 20)
        if self.v_init is not None:
            check_int("v_init", self.v_init, minimum=0, maximum=self.threshold - 1)

    @property
    def initial_potential(self) -> int:
        return self.threshold // 2 if self.v_init is None else self.v_init

    def reset(self, u: int) -> int:
        return u - self.threshold if u >= self.threshold else u

    @property
    def breakpoints(self) -> list[int]:
        """The first potential of the firing region of :meth:`reset` (golden.membrane)."""
        return [self.threshold]

    @property
    def membrane_range(self) -> MembraneRange:
        v0 = self.initial_potential
        return membrane_range(self.reset, self.breakpoints, v_init_lo=v0, v_init_hi=v0,
                              x_lo=self.input_format.min_int, x_hi=self.input_format.max_int,
                              time_steps=self.time_steps)

    @property
    def membrane_format(self) -> Format:
        """The narrowest signed format holding every reachable potential (and the threshold)."""
        r = self.membrane_range
        return Format.for_range(min(r.lo, 0), max(r.hi, self.threshold), self.input_format.frac,
                                what=f"the membrane (input {self.input_format}, time_steps = "
                                     f"{self.time_steps})")


def if_neuron(x: torch.Tensor, threshold: int, v_init: int | torch.Tensor | None = None, *,
              record_potential: bool = False) -> IFResult:
    """Run IF neurons on integer input ``x`` of shape ``(T, ...)``; vectorised over ``...``."""
    check_int("threshold", threshold, minimum=1)
    x = torch.as_tensor(x)
    if x.is_floating_point():
        raise TypeError("x must be an integer tensor; use if_neuron_float for real values")
    x = x.to(torch.int64)
    check_running_sum("x", x, threshold)
    v_init = torch.as_tensor(threshold // 2 if v_init is None else v_init)
    if v_init.is_floating_point() or v_init.dtype == torch.bool:
        raise TypeError(f"v_init must be an integer or an integer tensor, not {v_init.dtype}")
    if v_init.numel() and (int(v_init.min()) < 0 or int(v_init.max()) >= threshold):
        raise ValueError(f"v_init must lie in 0 .. threshold - 1 = {threshold - 1} (D3); it "
                         f"holds {int(v_init.min())} to {int(v_init.max())}")
    v = torch.broadcast_to(v_init.to(torch.int64), x.shape[1:]).clone()
    spikes = torch.empty_like(x)
    u_trace = torch.empty_like(x) if record_potential else None
    for t in range(x.shape[0]):
        v += x[t]
        if u_trace is not None:
            u_trace[t] = v
        s = (v >= threshold).to(torch.int64)
        v -= threshold * s
        spikes[t] = s
    return IFResult(spikes, v, u_trace)


def if_neuron_float(x: torch.Tensor, threshold: float, v_init: float | None = None) -> IFResult:
    """Real-valued twin of :func:`if_neuron` (for accuracy measurements only)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    v = torch.full(x.shape[1:], threshold / 2 if v_init is None else v_init, dtype=torch.float64)
    spikes = torch.empty_like(x)
    for t in range(x.shape[0]):
        v = v + x[t]
        s = (v >= threshold).to(torch.float64)
        v = v - threshold * s
        spikes[t] = s
    return IFResult(spikes, v)
