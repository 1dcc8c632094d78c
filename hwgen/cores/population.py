"""Shared skeleton of the neuron population cores: P neurons, membranes in memory, II = 1.

The input stream carries one beat per neuron update, ``{x, first}``, in a fixed sweep: beat j of
a time step updates neuron ``j mod P``. ``first`` marks the first time step of a new sample: the
neuron then starts from its initial potential instead of its stored membrane, so no clearing
phase is needed between samples and samples run back to back. The output stream carries one
beat per input beat, in the same order.

Pipeline (all stages advance together when the output register is free or being read)::

    edge 0: beat accepted, membrane read issued      -> stage "read"
    edge 1: membrane registered                      -> stage "fetch"
    edge 2..k+1: neuron-specific update stages       -> stage 1..k
    edge k+2: new membrane written, result registered -> output register

The fetch register takes the block RAM's output straight into flip-flops: ECP5 block RAM has a
slow clock-to-output (about 5.6 ns in nextpnr's model) and Yosys cannot use its internal output
register, so any logic after it in the same cycle would cap Fmax near 95 MHz.

The neuron's own recurrence (read membrane, update, write it back) spans ``k + 3`` cycles: the
read port is not transparent (a write-through bypass would put a multiplexer behind the block
RAM), so a read sees writes of earlier cycles only, and an update of neuron j must not enter
while an earlier update of j is anywhere in the pipeline. With ``P >= k + 3`` a fixed sweep never
does that and the core takes one beat per cycle; with fewer neurons it inserts bubbles
(``throughput = P / (k + 3)``).

A synchronous reset empties the pipeline and restarts the sweep at neuron 0; membranes are not
cleared (the next beat of each neuron must carry ``first = 1``).

Overflow: the membrane format is the exact hull of the values reachable in ``time_steps`` steps
(docs/decisions.md, D1), so a longer sample may take a membrane out of it. Every update
computes its membrane one bit wider than the format (the sum ``v + x``, and where the reset map
can leave the format, the value after the reset too) and tests the two top bits: they differ
exactly when the true value, as the golden integer model computes it without bounds, lies
outside the format. The sticky output ``overflow`` then rises and stays up until reset (a
``first`` beat does not clear it). It rises in the cycle in which the offending update's
output beat is first offered on ``o`` (the output register and the flag load at the same
edge), and it never changes while a beat waits on ``o``: the first beat transferred with
``overflow`` high is the offending update's (which may itself differ from golden), and every
beat before it equals golden. An overflow corrupts only that neuron's membrane until its next
``first`` beat; the other neurons stay exact.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.fixed import Format, check_int
from golden.membrane import membrane_range

__all__ = ["NeuronPopulation", "input_layout"]


def input_layout(width: int) -> data.StructLayout:
    """Input beat: the neuron's input ``x`` (signed) and the first-step-of-sample flag."""
    return data.StructLayout({"x": signed(width), "first": unsigned(1)})


class NeuronPopulation(wiring.Component):
    """Base class; subclasses define :meth:`update_stages` and the output layout.

    Parameters
    ----------
    neurons : int
        P, the number of neurons served.
    input_format : Format
        Format of ``x``.
    membrane_format : Format
        Format of the stored membrane (derived by the subclass from its golden config).
    initial_potential : int
        Membrane value used when ``first`` is set.
    output_layout : ShapeLike
        Output payload layout.
    """

    def __init__(self, *, neurons: int, input_format: Format, membrane_format: Format,
                 initial_potential: int, output_layout):
        check_int("neurons", neurons, minimum=1, maximum=1 << 16)
        self._neurons = neurons
        self._input_format = input_format
        self._membrane_format = membrane_format
        self._initial_potential = initial_potential
        super().__init__({
            "i": In(stream.Signature(input_layout(input_format.width))),
            "o": Out(stream.Signature(output_layout)),
            "overflow": Out(1),
        })

    @property
    def neurons(self) -> int:
        return self._neurons

    @property
    def input_format(self) -> Format:
        return self._input_format

    @property
    def membrane_format(self) -> Format:
        return self._membrane_format

    @property
    def update_depth(self) -> int:
        """k, the number of neuron-specific register stages."""
        raise NotImplementedError

    @property
    def recurrence_depth(self) -> int:
        """Cycles from a membrane read to the first read that sees its write-back."""
        return self.update_depth + 3

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to the earliest transfer of its output."""
        return self.update_depth + 3

    @property
    def throughput(self) -> float:
        """Input beats accepted per cycle when neither side stalls."""
        return min(1.0, self.neurons / self.recurrence_depth)

    def input_beats(self, x, *, beyond_time_steps: bool = False) -> list[dict]:
        """Input payloads for a sample ``x`` of shape (T, P): time step major, neuron minor,
        ``first`` set on the first step.

        A sample longer than ``time_steps`` steps is refused unless ``beyond_time_steps`` is
        true: its membranes may leave the membrane format (the core then raises ``overflow``;
        :meth:`reference_overflows` says where)."""
        if not isinstance(beyond_time_steps, bool):
            raise TypeError(f"beyond_time_steps must be a bool, not {beyond_time_steps!r}")
        x = self._input_format.check("x", x)
        if x.dim() != 2 or x.shape[1] != self._neurons:
            raise ValueError(f"x must have shape (T, {self._neurons}), not {tuple(x.shape)}")
        if x.shape[0] > self.config.time_steps and not beyond_time_steps:
            raise ValueError(f"x has {x.shape[0]} time steps, more than time_steps = "
                             f"{self.config.time_steps} for which the membrane width is derived; "
                             f"pass beyond_time_steps=True to stream a longer sample (its "
                             f"membranes may overflow)")
        return [{"x": int(x[t, j]), "first": int(t == 0)}
                for t in range(x.shape[0]) for j in range(self._neurons)]

    def reference_outputs(self, x) -> list[dict]:
        """Output payloads the golden twin gives for sample ``x``, in stream order."""
        raise NotImplementedError

    def reference_membranes(self, x):
        """The golden twin's membranes for sample ``x`` (any length): ``(u, v)``, both of
        shape (T, P), ``u`` the integrated potential ``v + x`` of each update and ``v`` the
        membrane after its reset, unbounded (int64)."""
        raise NotImplementedError

    def reference_overflows(self, x) -> list[int]:
        """Per output beat of sample ``x``, in stream order: 1 where the golden update's
        membrane (``u`` or ``v`` of :meth:`reference_membranes`) lies outside
        :attr:`membrane_format`, else 0. The core's ``overflow`` rises with the output beat of
        the first 1 (when the sample starts with no overflow raised)."""
        u, v = self.reference_membranes(x)
        lo, hi = self._membrane_format.min_int, self._membrane_format.max_int
        outside = (u < lo) | (u > hi) | (v < lo) | (v > hi)
        return [int(o) for o in outside.flatten()]

    def reset_keeps_format(self) -> bool:
        """Whether the neuron's reset map (``config.reset``, slope 1 between
        ``config.breakpoints``, as in :mod:`golden.membrane`) takes every potential of the
        membrane format into the format: if so, a membrane after the reset cannot overflow when
        the potential did not, and only the sum ``v + x`` needs the overflow test. Exact (the
        image's hull is computed)."""
        lo, hi = self._membrane_format.min_int, self._membrane_format.max_int
        image = membrane_range(self.config.reset, self.config.breakpoints, v_init_lo=lo,
                               v_init_hi=hi, x_lo=0, x_hi=0, time_steps=1)
        return lo <= image.v_lo and image.v_hi <= hi

    def update_stages(self, m: Module, advance, v_old, x):
        """Add the neuron update between the membrane read and the write-back.

        ``v_old`` and ``x`` are valid in the fetch stage. The method registers its own stages
        under ``m.If(advance)`` (exactly :attr:`update_depth` of them) and returns
        ``(v_new, payload, overflow)``: the new membrane, the output payload and a bit that is
        1 when this update's true membrane (the sum ``v_old + x`` or the value after the reset,
        unbounded) does not fit the membrane format, all combinational from its last stage's
        registers.
        """
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        depth = self.update_depth
        membrane_shape = signed(self._membrane_format.width)
        index_shape = unsigned(max(1, ceil_log2(self._neurons)))

        m.submodules.membranes = membranes = memory.Memory(
            shape=membrane_shape, depth=self._neurons, init=[])
        write = membranes.write_port()
        read = membranes.read_port()

        out_valid = Signal()
        advance = Signal()
        m.d.comb += advance.eq(~out_valid | self.o.ready)

        # Stage registers: [0] is the read stage, [1] the fetch stage, [2..depth+1] the update
        # stages.
        stages = depth + 2
        valid = [Signal(name=f"valid_{s}") for s in range(stages)]
        index = [Signal(index_shape, name=f"index_{s}", reset_less=True) for s in range(stages)]
        # Data registers need no reset (only valid bits and the sweep do); without one they map
        # to plain enable flip-flops, with no LUT between the block RAM and the fetch register.
        x = [Signal(signed(self._input_format.width), name=f"x_{s}", reset_less=True)
             for s in range(2)]
        first = [Signal(name=f"first_{s}", reset_less=True) for s in range(2)]

        sweep = Signal(index_shape)
        hazard = Const(0)
        if self._neurons < self.recurrence_depth:
            for s in range(stages):
                hazard = hazard | (valid[s] & (index[s] == sweep))
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(advance & ~hazard),
            accept.eq(self.i.valid & self.i.ready),
            read.addr.eq(sweep),
            read.en.eq(advance),
        ]
        fetched = Signal(membrane_shape, reset_less=True)
        with m.If(advance):
            m.d.sync += [
                valid[0].eq(accept),
                index[0].eq(sweep),
                x[0].eq(self.i.payload.x),
                first[0].eq(self.i.payload.first),
                x[1].eq(x[0]),
                first[1].eq(first[0]),
                fetched.eq(read.data),
            ]
            for s in range(stages - 1):
                m.d.sync += [valid[s + 1].eq(valid[s]), index[s + 1].eq(index[s])]
        with m.If(accept):
            m.d.sync += sweep.eq(Mux(sweep == self._neurons - 1, 0, sweep + 1))

        # The membrane format holds v_init + x for every x, so the input is no wider: a sum
        # one bit wider than the membrane is exact (the overflow tests rely on it).
        assert self._input_format.width <= self._membrane_format.width
        v_old = Signal(membrane_shape)
        m.d.comb += v_old.eq(Mux(first[1], self._initial_potential, fetched))
        v_new, payload, overflow = self.update_stages(m, advance, v_old, x[1])

        m.d.comb += [
            write.addr.eq(index[-1]),
            write.data.eq(v_new),
            write.en.eq(valid[-1] & advance),
        ]
        with m.If(advance):
            m.d.sync += [out_valid.eq(valid[-1]), self.o.payload.eq(payload)]
        # Sticky until reset; loads with the output register, so it rises with the offending
        # beat's first offer on o and holds still while a beat waits.
        with m.If(valid[-1] & advance & overflow):
            m.d.sync += self.overflow.eq(1)
        m.d.comb += self.o.valid.eq(out_valid)
        return m
