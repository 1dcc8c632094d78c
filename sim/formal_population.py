"""Formal check of the neuron population cores (IF and MT) with SymbiYosys: no input sequence
within the contract overflows the membrane, which proves on small widths that the membrane
width of D1 (docs/decisions.md) suffices for every input, not only the simulated ones.

:class:`PopulationProperty` wraps a core. Its inputs (``i.valid``, ``i.payload``, ``o.ready``
and the reset) are free in every cycle, under one assumption, the core's contract: every beat
continues a sample of fewer than ``time_steps`` steps of its neuron or starts a new one
(``first = 1``), and each neuron's first beat after a reset starts one. It asserts that
``overflow`` stays low. A bounded model check to :func:`population_depth` cycles lets every
neuron run a whole sample of ``time_steps`` steps, at the core's fastest sweep, with its last
update reaching the output stage; later samples start from the initial potential again, so a
longer trace reaches no other membrane value.

The check can fail (tests/test_formal_population.py): where the hull of reachable membranes,
not a threshold, sets the membrane width, a membrane one bit narrower no longer holds the hull's
extreme and the solver reaches it (the hull is exact); and where one more step leaves the
format, samples of ``time_steps + 1`` steps overflow.

The solver's time grows steeply with the number of neurons, whose membranes it tracks (IF,
5-bit input, 3 steps: 4 s with 2 neurons; with 5, still running after 9 minutes, when it was
stopped), so the checks use at most three, on small widths.
"""

from __future__ import annotations

from pathlib import Path

from amaranth import Array, ClockDomain, Elaboratable, Module, Mux, Signal
from amaranth.hdl import Assert, Assume

from golden.fixed import check_int
from hwgen.cores.population import NeuronPopulation

from .sby import run_bmc

__all__ = ["PopulationProperty", "check_population_formally", "population_depth"]


class PopulationProperty(Elaboratable):
    """``core`` with samples of at most ``steps`` steps assumed (default: the core's
    ``time_steps``) and ``overflow`` asserted low."""

    def __init__(self, core: NeuronPopulation, steps: int | None = None):
        self.core = core
        self.steps = core.config.time_steps if steps is None else steps
        check_int("steps", self.steps, minimum=1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        i = core.i
        neurons = core.neurons
        # The neuron of the next input beat (the core's sweep), and per neuron the steps of
        # its sample so far (0: none since reset).
        neuron = Signal(range(neurons))
        steps = Array(Signal(range(self.steps + 1), name=f"steps_{j}") for j in range(neurons))
        with m.If(i.valid):
            m.d.comb += Assume(i.payload.first | ((steps[neuron] != 0)
                                                  & (steps[neuron] < self.steps)))
        with m.If(i.valid & i.ready):
            m.d.sync += [
                steps[neuron].eq(Mux(i.payload.first, 1, steps[neuron] + 1)),
                neuron.eq(Mux(neuron == neurons - 1, 0, neuron + 1)),
            ]
        m.d.comb += Assert(~core.overflow)
        return m


def population_depth(core: NeuronPopulation, steps: int | None = None) -> int:
    """Cycles for every neuron to run ``steps`` (default ``time_steps``) updates at the core's
    fastest sweep (one beat per cycle, or ``recurrence_depth`` cycles per round below that many
    neurons), the last one reaching the output stage where ``overflow`` loads, plus the cycle of
    reset and the first offer."""
    steps = core.config.time_steps if steps is None else steps
    return steps * max(core.neurons, core.recurrence_depth) + core.latency + 2


def check_population_formally(core: NeuronPopulation, work_dir: Path, *,
                              steps: int | None = None, depth: int | None = None) -> dict:
    """Run the bounded model check of :class:`PopulationProperty` to ``depth`` cycles (default
    :func:`population_depth`); return ``{"status": "PASS" or "FAIL", "depth", "log"}``."""
    if depth is None:
        depth = population_depth(core, steps)
    top = Module()
    top.submodules.property = PopulationProperty(core, steps)
    top.domains.sync = sync = ClockDomain("sync")
    ports = [core.i.valid, core.i.payload.as_value(), core.o.ready, sync.clk, sync.rst]
    return run_bmc(top, ports, work_dir, depth)
