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

from bisect import bisect_right
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
    """Iterate the interval map above for ``time_steps`` steps.

    Where the map only shifts the interval (both ends move by the same amounts as on the step
    before, inside the same pieces of ``reset``), the run of such steps is found by galloping
    and taken at once, so the cost grows with log(time_steps), not with time_steps: an input
    beyond the largest level makes the membrane grow linearly for every step."""
    breakpoints = sorted(breakpoints)

    def step(v_lo: int, v_hi: int) -> tuple[int, int, tuple]:
        """The next interval and what decides it: the pieces of ``a`` and ``c``, which end
        each bound comes from, and how far each bound moves."""
        a, c = v_lo + x_lo, v_hi + x_hi
        first, last = bisect_right(breakpoints, a), bisect_right(breakpoints, c)
        inner = breakpoints[first:last]  # the breakpoints in (a, c]
        lo_inner = min((reset(b) for b in inner), default=None)
        hi_inner = max((reset(b - 1) for b in inner), default=None)
        lo_from_a = lo_inner is None or reset(a) < lo_inner
        hi_from_c = hi_inner is None or reset(c) > hi_inner
        new_lo = reset(a) if lo_from_a else lo_inner
        new_hi = reset(c) if hi_from_c else hi_inner
        return new_lo, new_hi, (first, last, lo_from_a, hi_from_c, new_lo - v_lo, new_hi - v_hi)

    v_lo, v_hi = v_init_lo, v_init_hi
    u_lo = u_hi = None
    all_v_lo, all_v_hi = v_lo, v_hi
    done = 0
    while done < time_steps:
        u_lo = v_lo + x_lo if u_lo is None else min(u_lo, v_lo + x_lo)
        u_hi = v_hi + x_hi if u_hi is None else max(u_hi, v_hi + x_hi)
        new_lo, new_hi, how = step(v_lo, v_hi)
        d_lo, d_hi = how[-2:]
        if d_lo == d_hi == 0:
            break  # a fixed point: later steps reach nothing new
        # States v + m·d with the same pieces, ends and moves as v step exactly like v, and so
        # do all states between two of them (each bound and comparison is linear in m): the
        # largest such m gives m + 1 steps at once.
        def shifts_alike(m: int) -> bool:
            return step(v_lo + m * d_lo, v_hi + m * d_hi)[2] == how

        room = time_steps - done - 1
        m = 0
        reach = 1
        while reach <= room and shifts_alike(reach):
            m, reach = reach, reach * 2
        top = min(reach, room + 1)  # shifts_alike(top) is False or top is out of room
        while top - m > 1:
            mid = (m + top) // 2
            if shifts_alike(mid):
                m = mid
            else:
                top = mid
        # Steps from the states v, v + d, ..., v + m·d: the bounds move linearly, so their
        # extremes are at the ends.
        u_lo = min(u_lo, v_lo + m * d_lo + x_lo)
        u_hi = max(u_hi, v_hi + m * d_hi + x_hi)
        v_lo, v_hi = v_lo + (m + 1) * d_lo, v_hi + (m + 1) * d_hi
        all_v_lo, all_v_hi = min(all_v_lo, v_lo, new_lo), max(all_v_hi, v_hi, new_hi)
        done += m + 1
    return MembraneRange(u_lo=u_lo, u_hi=u_hi, v_lo=all_v_lo, v_hi=all_v_hi)
