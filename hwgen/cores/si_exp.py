"""SI-exp core, the few-spikes exponential neuron; golden twin :mod:`golden.si_exp` (D5).

Both variants compute, bit-exact with :func:`golden.si_exp.si_exp`::

    v = clamp(x, lo, hi); out = 0; spikes = 0
    for t in 0..K-1:  z = v >= T[t];  out += d[t]·z;  v -= h[t]·z;  spikes += z

Each step is a comparison followed by a subtraction, two carry chains in series. The cores
split them across register boundaries by deciding the next step's spike one step early: with
``z`` the registered spike of step t, ``z' = z ? (v >= T[t+1] + h[t]) : (v >= T[t+1])`` needs
only the current ``v``, so the new ``v``, the next ``z``, ``out`` and ``spikes`` are each one
carry chain (in parallel) followed by a multiplexer. The clamp decides the first spike the same
way (``x`` below ``lo``, above ``hi`` or in range, all three compared in parallel).
"""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.fixed import Format, check_int
from golden.si_exp import SIExpTable, shipped_table, si_exp

__all__ = ["SIExp", "VARIANTS", "load_table", "resolve_table"]

VARIANTS = ("unrolled", "iterative")


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def resolve_table(K: int | None, lo: float | None, hi: float | None,
                  table: SIExpTable | str | Path | None) -> SIExpTable:
    """The table a core uses: ``table`` (an :class:`SIExpTable` or the path of a table JSON),
    which must have K steps on [lo, hi] where they are given (None takes the table's); or, if
    None, the shipped table for (K, lo, hi), with K = 12 and [-1, 1] where they are None."""
    table = load_table(table)
    if table is not None:
        K = table.K if K is None else K
        lo, hi = (table.range[0] if lo is None else lo), (table.range[1] if hi is None else hi)
    K = 12 if K is None else K
    lo, hi = (-1.0 if lo is None else lo), (1.0 if hi is None else hi)
    check_int("K", K, minimum=1, maximum=64)
    lo, hi = _check_real("lo", lo), _check_real("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo must be less than hi, not lo={lo:g}, hi={hi:g}")
    if table is None:
        return shipped_table(K, lo, hi)
    if not table.input_format.signed:
        raise ValueError(f"the cores take signed inputs; this table's input format "
                         f"{table.input_format} is unsigned")
    if table.K != K:
        raise ValueError(f"K={K} does not match the table, which has K={table.K}")
    f = table.input_format
    if (f.quantise_scalar("lo", lo), f.quantise_scalar("hi", hi)) != (table.lo, table.hi):
        t_lo, t_hi = table.range
        raise ValueError(f"range [{lo:g}, {hi:g}] does not match the table's range "
                         f"[{t_lo:g}, {t_hi:g}]")
    return table


def load_table(table: SIExpTable | str | Path | None) -> SIExpTable | None:
    """``table`` as a core takes it: an :class:`SIExpTable` or None as it is, the path of a
    table JSON read; TypeError for anything else, ValueError for an empty path."""
    if isinstance(table, (str, Path)):
        if str(table) == "":
            raise ValueError("table must be the path of a table JSON, an SIExpTable or None, "
                             "not an empty path ''")
        return SIExpTable.load(table)
    if table is not None and not isinstance(table, SIExpTable):
        raise TypeError(f"table must be an SIExpTable, a path to a table JSON or None, "
                        f"not {table!r}")
    return table


def _tagged(fields: dict, tag_width: int) -> data.StructLayout:
    return data.StructLayout({**fields, **({"tag": unsigned(tag_width)} if tag_width else {})})


def table_rows(table: SIExpTable) -> tuple[data.StructLayout, list[dict]]:
    """Layout and contents of the iterative variant's table memory, one row per step: row s
    holds what step s needs, h[s] and d[s], and the two thresholds that decide the spike of
    step s + 1, T[s + 1] and T[s + 1] + h[s] (both 0 in the last row, where they are unused)."""
    K = table.K
    nxt = [table.T[s + 1] if s + 1 < K else 0 for s in range(K)]
    nxt_h = [nxt[s] + table.h[s] if s + 1 < K else 0 for s in range(K)]

    def width(values):
        return signed(Format.for_range(min(values), max(values)).width)

    layout = data.StructLayout({"h": width(table.h), "d": width(table.d), "tn": width(nxt),
                                "tnh": width(nxt_h)})
    init = [{"h": table.h[s], "d": table.d[s], "tn": nxt[s], "tnh": nxt_h[s]} for s in range(K)]
    return layout, init


class SIExp(wiring.Component):
    """SI-exp neuron: ``out ≈ exp(x)`` by K steps of table-driven few-spikes dynamics.

    Bit-exact with :func:`golden.si_exp.si_exp`, clamp to [lo, hi] included. No multipliers:
    ``h``, ``d`` and ``T`` enter only through additions and comparisons.

    Streams: ``i`` carries ``{x: signed(W)}`` with W the table's input format width (``x`` in
    input LSBs); ``o`` carries ``{out: signed(A), spikes: unsigned(S)}``, ``out`` in output
    LSBs and ``spikes`` the number of spikes over the K steps (for energy counts), one beat per
    input beat, in order. A is the exact width of ``out`` over every input and step
    (:attr:`SIExpTable.accumulator_format`); the potential register has the exact width of
    :attr:`SIExpTable.potential_format`; S holds 0..K. With ``tag_width > 0`` both payloads
    also carry ``tag``, copied from each input beat to its output beat.

    Latency K + 1 cycles (clamp, then one per step) in both variants. Throughput: "unrolled",
    K + 1 pipeline stages, one beat per cycle; "iterative", one stage used K times with
    (h, d, T[t+1], T[t+1] + h) in a K-entry :class:`amaranth.lib.memory.Memory` read through a
    fetch register, one beat every K cycles (the next beat enters as the last step of the
    previous one completes), from the first cycle after a reset.

    Parameters
    ----------
    K : int or None
        Steps (1 to 64); must match ``table`` when one is given. None takes the table's K, or
        12 without a table.
    lo, hi : float or None
        The input range [lo, hi] (real numbers); inputs are clamped into it. Selects the shipped
        table with ``table=None`` and must match ``table`` otherwise. None takes the table's
        range, or [-1, 1] without a table.
    variant : str
        "unrolled" (one beat per cycle) or "iterative" (one beat per K cycles, smaller).
    table : SIExpTable or str or None
        The tables h, d, T with their formats, or the path of a table JSON; None loads the
        shipped table for (K, lo, hi) from ``golden/tables``.
    tag_width : int
        Width of an opaque ``tag`` field carried from input to output (0: no tag; 0 to 64).
    """

    def __init__(self, *, K: int | None = None, lo: float | None = None,
                 hi: float | None = None,
                 variant: str = "unrolled", table: SIExpTable | str | None = None,
                 tag_width: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        check_int("tag_width", tag_width, minimum=0, maximum=64)
        self._table = resolve_table(K, lo, hi, table)
        self._variant = variant
        self._tag_width = tag_width
        t = self._table
        # The hardware relies on these; the exhaustive formats guarantee them.
        assert t.potential_format.contains([t.lo, t.hi, *t.T])
        spikes_width = max(1, t.K.bit_length())
        super().__init__({
            "i": In(stream.Signature(_tagged({"x": signed(t.input_format.width)}, tag_width))),
            "o": Out(stream.Signature(_tagged({"out": signed(t.accumulator_format.width),
                                               "spikes": unsigned(spikes_width)}, tag_width))),
        })

    @property
    def table(self) -> SIExpTable:
        return self._table

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def K(self) -> int:
        return self._table.K

    @property
    def input_format(self) -> Format:
        return self._table.input_format

    @property
    def potential_format(self) -> Format:
        return self._table.potential_format

    @property
    def output_format(self) -> Format:
        """Format of ``out`` on the output port."""
        return self._table.accumulator_format

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to the earliest transfer of its output."""
        return self.K + 1

    @property
    def throughput(self) -> float:
        """Input beats accepted per cycle when neither side stalls."""
        return 1.0 if self._variant == "unrolled" else 1 / self.K

    def reference_outputs(self, x) -> list[dict]:
        """Output payloads (without tags) the golden twin gives for the inputs ``x``."""
        res = si_exp(x, self._table)
        return [{"out": int(o), "spikes": int(s)}
                for o, s in zip(res.out.flatten(), res.spikes.flatten())]

    def _first_step(self, x):
        """Clamped potential and the first spike, from the raw input (see module docstring)."""
        t = self._table
        below, above = x < t.lo, x > t.hi
        v = Mux(below, t.lo, Mux(above, t.hi, x))
        z = Mux(below, int(t.lo >= t.T[0]), Mux(above, int(t.hi >= t.T[0]), x >= t.T[0]))
        return v, z

    def elaborate(self, platform):
        m = Module()
        if self._variant == "unrolled":
            self._elaborate_unrolled(m)
        else:
            self._elaborate_iterative(m)
        return m

    def _registers(self, name: str):
        """Working registers of one step: potential, spike, out, spikes, tag."""
        o = self.o.payload
        return (Signal(signed(self.potential_format.width), name=f"v_{name}", reset_less=True),
                Signal(name=f"z_{name}", reset_less=True),
                Signal(o.out.shape(), name=f"out_{name}", reset_less=True),
                Signal(o.spikes.shape(), name=f"spikes_{name}", reset_less=True),
                Signal(self._tag_width, name=f"tag_{name}", reset_less=True))

    def _input_tag(self):
        return self.i.payload.tag if self._tag_width else Const(0, 0)

    def _output(self, m, out, spikes, tag):
        m.d.sync += [self.o.payload.out.eq(out), self.o.payload.spikes.eq(spikes)]
        if self._tag_width:
            m.d.sync += self.o.payload.tag.eq(tag)

    def _elaborate_unrolled(self, m):
        t = self._table
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]
        # valid[0] is the clamp stage, valid[s] the stage after step s; valid[K] is o.valid.
        valid = [Signal(name=f"valid_{s}") for s in range(t.K)] + [self.o.valid]
        v, z, out, spikes, tag = self._registers("0")
        v0, z0 = self._first_step(self.i.payload.x)
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), v.eq(v0), z.eq(z0),
                         tag.eq(self._input_tag())]
            for s in range(t.K):
                m.d.sync += valid[s + 1].eq(valid[s])
        for s in range(t.K):
            new_out = Mux(z, t.d[s], 0) if s == 0 else out + Mux(z, t.d[s], 0)
            new_spikes = z if s == 0 else spikes + z
            if s == t.K - 1:
                with m.If(advance):
                    self._output(m, new_out, new_spikes, tag)
                break
            nv, nz, nout, nspikes, ntag = self._registers(str(s + 1))
            with m.If(advance):
                m.d.sync += [
                    nv.eq(Mux(z, v - t.h[s], v)),
                    nz.eq(Mux(z, v >= t.T[s + 1] + t.h[s], v >= t.T[s + 1])),
                    nout.eq(new_out),
                    nspikes.eq(new_spikes),
                    ntag.eq(tag),
                ]
            v, z, out, spikes, tag = nv, nz, nout, nspikes, ntag

    def _elaborate_iterative(self, m):
        t = self._table
        K = t.K
        row_layout, init = table_rows(t)
        m.submodules.rows = rows = memory.Memory(shape=row_layout, depth=K, init=init)
        read = rows.read_port()

        # The read port and the fetch register form a two-row prefetch queue that advances
        # each time a step consumes a row: the fetch register holds the row of the next step,
        # the read port the row after it. Rows are consumed in the cyclic order 0..K-1, so the
        # queue needs no knowledge of inputs. A reset puts row 0 in the fetch register and
        # reads row 1 in its first cycle, before a beat accepted then takes its first step.
        row = Signal(row_layout, init=init[0])
        address = Signal(range(K), init=1 % K)
        primed = Signal()

        v, z, out, spikes, tag = self._registers("work")
        busy = Signal()
        step = Signal(range(K))
        last = Signal()
        out_free = Signal()
        iterate = Signal()
        consume = Signal()
        m.d.comb += [
            last.eq(step == K - 1),
            out_free.eq(~self.o.valid | self.o.ready),
            iterate.eq(busy & (~last | out_free)),
            consume.eq(iterate | ~primed),
            read.addr.eq(address),
            read.en.eq(consume),
            self.i.ready.eq(~busy | (last & out_free)),
        ]
        m.d.sync += primed.eq(1)
        with m.If(consume):
            m.d.sync += address.eq(Mux(address == K - 1, 0, address + 1))
        with m.If(iterate):
            m.d.sync += row.eq(read.data)

        new_out = out + Mux(z, row.d, 0)
        new_spikes = spikes + z
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(iterate):
            m.d.sync += [
                v.eq(Mux(z, v - row.h, v)),
                z.eq(Mux(z, v >= row.tnh, v >= row.tn)),
                out.eq(new_out),
                spikes.eq(new_spikes),
                step.eq(step + 1),
            ]
            with m.If(last):
                self._output(m, new_out, new_spikes, tag)
                m.d.sync += [self.o.valid.eq(1), busy.eq(0), step.eq(0)]
        # A new input may load the working registers in the cycle the previous one leaves.
        with m.If(self.i.valid & self.i.ready):
            v0, z0 = self._first_step(self.i.payload.x)
            m.d.sync += [v.eq(v0), z.eq(z0), out.eq(0), spikes.eq(0),
                         tag.eq(self._input_tag()), busy.eq(1), step.eq(0)]
