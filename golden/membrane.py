"""Membrane ranges: how wide a neuron's state register must be.

A neuron with subtract-reset maps its integrated potential ``u = v + x`` to the next state
``v' = reset(u)``, a function that rises with slope 1 between *breakpoints* (the first ``u`` of
each new firing region) and drops at each of them. The image of an interval ``[a, c]`` is then
bounded by ``reset(a)``, ``reset(c)``, ``reset(b)`` and ``reset(b - 1)`` for every breakpoint
``b`` in ``(a, c]``. Iterating that over T steps gives the exact hull of every reachable ``u``
and ``v`` (the hull, not the set: the bound is tight at its ends), from which the generators
derive register widths (D1: no width chosen by accident).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["MembraneRange", "membrane_range"]


@dataclass(frozen=True)
class MembraneRange:
    """Bounds of the integrated potential ``u`` and stored state ``v`` over T steps."""

    u_lo: int
    u_hi: int
    v_lo: int
    v_hi: int

    @property
    def lo(self) -> int:
        return min(self.u_lo, self.v_lo)

    @property
    def hi(self) -> int:
        return max(self.u_hi, self.v_hi)


def membrane_range(reset: Callable[[int], int], breakpoints: Sequence[int], *, v_init_lo: int,
                   v_init_hi: int, x_lo: int, x_hi: int, time_steps: int) -> MembraneRange:
    v_lo, v_hi = v_init_lo, v_init_hi
    u_lo = u_hi = None
    all_v_lo, all_v_hi = v_lo, v_hi
    for _ in range(time_steps):
        a, c = v_lo + x_lo, v_hi + x_hi
        u_lo = a if u_lo is None else min(u_lo, a)
        u_hi = c if u_hi is None else max(u_hi, c)
        inner = [b for b in breakpoints if a < b <= c]
        new_lo = min([reset(a)] + [reset(b) for b in inner])
        new_hi = max([reset(c)] + [reset(b - 1) for b in inner])
        if (new_lo, new_hi) == (v_lo, v_hi):
            # A fixed point: later steps reach nothing new.
            break
        v_lo, v_hi = new_lo, new_hi
        all_v_lo, all_v_hi = min(all_v_lo, v_lo), max(all_v_hi, v_hi)
    return MembraneRange(u_lo=u_lo, u_hi=u_hi, v_lo=all_v_lo, v_hi=all_v_hi)
