"""Spiking softmax core: SI-exp then SI-norm over each row; golden twin
:func:`golden.softmax.spiking_softmax` (D7).

Dataflow, rows back to back::

    i ─► [max: row buffer X, 2 banks] ─► slice ─► [SI-exp, unrolled]
      ─► [row buffer E, 2 banks] ─► slice ─► [SI-norm] ─► o

* **Max stage** (only with ``subtract_max``): scores are written into bank X[b] while a running
  maximum is kept; at the row end the bank is handed over with its length and maximum. Reading
  it back computes ``x - max`` (saturated to the input format, where the SI-exp clamp makes
  it equivalent to the golden model's clamp of the difference).
* **Exp stage**: every score (or difference) enters SI-exp; each result, clamped at 0, is
  written into bank E[b] and added to the row's ``Vth``. The row end is handed over with its
  length and ``Vth``.
* **Norm stage**: bank E[b] is read back with the row's ``Vth`` into SI-norm, whose counts
  leave on ``o`` with the row's ``last``.

Each buffer has two banks with a full flag each: the producer fills one while the consumer
empties the other, and a bank is released as its last entry is read, so a row of n moves on
every n cycles. The memories are read through a registered read port and a fetch register (no
transparent port, no logic behind the RAM output). The row ``last`` travels with each beat
through the SI-exp and SI-norm pipelines in their tag fields. A register slice (a skid buffer,
whose ``ready`` is a register) sits in front of each pipeline, so a pipeline's stall does not
reach the buffer control combinationally; the running maximum is kept unresolved (see
``_max_stage``) so that its update has no multiplexer behind its carry chain. These keep every
register-to-register path to one carry chain and a few LUTs.

Rows longer than ``n_max`` do not corrupt state: the core cuts them into pieces of ``n_max``
scores, each normalised as a row of its own, and marks the end of each cut piece in the output
with ``last = 1`` and ``cut = 1`` (a row's true end has ``cut = 0``). The pieces are exactly the
golden model applied to each piece.
"""

from __future__ import annotations

import torch
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.fixed import check_int
from golden.si_exp import SIExpTable, check_exp_table
from golden.softmax import spiking_softmax

from ..register_slice import RegisterSlice
from .si_exp import VARIANTS, SIExp, resolve_table
from .si_norm import MAX_E_WIDTH, SINorm, check_norm_parameters

__all__ = ["SpikingSoftmax"]

#: Tag bits carried through SI-exp and SI-norm with each beat.
_TAG = data.StructLayout({"last": 1, "cut": 1})


class SpikingSoftmax(wiring.Component):
    """Spiking softmax over rows of up to ``n_max`` scores: SI-exp, row sum, SI-norm.

    Per row: optional max subtraction, ``e = max(SI-exp(x), 0)``, ``Vth = Σ e`` (exact),
    ``c = floor((N·e + v_init) / Vth)``, bit-exact with
    :func:`golden.softmax.spiking_softmax`. Uses :class:`~hwgen.cores.si_exp.SIExp`
    (unrolled) and :class:`~hwgen.cores.si_norm.SINorm` as submodules; no multipliers.

    Streams: ``i`` carries ``{x: signed(W), last: 1}``, the row's scores in the table's input
    format (W bits), ``last`` on the row's final score; rows have 1 to ``n_max`` scores and
    follow each other directly. ``o`` carries ``{c: unsigned(q + 1), last: 1, cut: 1}``,
    one count (out of N = 2**q) per score, in order, ``last`` on the row's final count. A row
    longer than ``n_max`` is cut into pieces of ``n_max`` scores, each normalised as a row; the
    end of a cut piece has ``last = 1, cut = 1``.

    Timing for rows of n scores with neither side stalling (measured in the simulator and
    cocotb regressions): from the transfer of a row's first score to that of its first count,
    ``2n + K + q + 10`` cycles with max subtraction (the whole row is seen before the first
    exp, and all exps of the row before the first count) and ``n + K + q + 7`` without; rows
    of n back to back, one row every n cycles (one score per cycle in and out). The
    "iterative" variant adds ``(n - 1)·(K - 1)`` to the first count (one exp per K cycles),
    sends the counts of a row one per ``q + 1`` cycles and takes a row every
    ``n·max(K, q + 1)`` cycles. :meth:`row_latency` gives the formula. Each buffer holds two
    rows, so a row longer than the rows before it, or a stalled output, can stall the input.

    Parameters
    ----------
    n_max : int
        Longest row (1 to 4096); sets the row buffers (2 banks of n_max entries each).
    K : int or None
        SI-exp steps; must match ``table`` when one is given. None takes the table's K, or 12
        without a table.
    lo, hi : float or None
        SI-exp input range; None takes [-8, 0] with ``subtract_max`` and [-1, 1] without, or
        the range of ``table`` when one is given.
    table : SIExpTable or str or None
        SI-exp tables, or the path of a table JSON; None loads the shipped table for
        (K, lo, hi).
    N : int
        SI-norm input spikes, a power of two 2**q (1 to 2**24): counts are out of N.
    subtract_max : bool
        Subtract the row maximum before SI-exp (for real logits; needs the row buffer X).
    rounding : str
        SI-norm initial potential: "round" (Vth // 2) or "floor" (0).
    variant : str
        "unrolled" (SI-exp unrolled, SI-norm pipelined: one score per cycle) or "iterative"
        (both iterative, much smaller: one score per K cycles into SI-exp and one count per
        q + 1 cycles out of SI-norm; for callers that deliver a score every max(K, q + 1)
        cycles or slower).
    x_width : int or None
        Width of the scores ``x`` on ``i`` when they are wider than the table's input format,
        from the format's width to 64 (only with ``subtract_max``: the difference ``x - max``
        is taken at this width and then saturated into the format). None takes the format's
        width.
    """

    def __init__(self, *, n_max: int = 16, K: int | None = None, lo: float | None = None,
                 hi: float | None = None, table: SIExpTable | str | None = None,
                 N: int = 256, subtract_max: bool = True, rounding: str = "round",
                 variant: str = "unrolled", x_width: int | None = None):
        check_int("n_max", n_max, minimum=1, maximum=1 << 12)
        if not isinstance(subtract_max, bool):
            raise TypeError(f"subtract_max must be a bool, not {subtract_max!r}")
        self._q = check_norm_parameters(N, rounding)
        if table is None:  # with a table, resolve_table takes its range for a None
            d_lo, d_hi = (-8.0, 0.0) if subtract_max else (-1.0, 1.0)
            lo, hi = (d_lo if lo is None else lo), (d_hi if hi is None else hi)
        self._table = check_exp_table(resolve_table(K, lo, hi, table))
        width = self._table.input_format.width
        if x_width is None:
            x_width = width
        elif not subtract_max:
            raise ValueError(f"x_width is only supported with subtract_max=True (the scores "
                             f"then enter SI-exp as they are), not x_width={x_width!r}")
        else:
            check_int("x_width", x_width, minimum=width, maximum=64)
        self._x_width = x_width
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        self._variant = variant
        self._n_max, self._N = n_max, N
        self._subtract_max, self._rounding = subtract_max, rounding
        if subtract_max and self._table.hi != 0:
            raise ValueError(f"subtract_max=True needs a table whose range ends at 0 (the "
                             f"scores minus their row maximum); this one covers "
                             f"{list(self._table.range)}")
        output_max = max(0, self._table.output_range[1])
        self._e_width = max(1, output_max.bit_length())
        if self._e_width > MAX_E_WIDTH:
            raise ValueError(f"the table's outputs reach {output_max}, {self._e_width} bits; "
                             f"SI-norm takes exponentials of at most {MAX_E_WIDTH} bits")
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "x": signed(self._x_width), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "c": unsigned(self._q + 1), "last": 1, "cut": 1}))),
        })

    @property
    def table(self) -> SIExpTable:
        return self._table

    @property
    def n_max(self) -> int:
        return self._n_max

    @property
    def N(self) -> int:
        return self._N

    @property
    def q(self) -> int:
        return self._q

    @property
    def K(self) -> int:
        return self._table.K

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def x_width(self) -> int:
        """Width of the scores on ``i``."""
        return self._x_width

    @property
    def subtract_max(self) -> bool:
        return self._subtract_max

    @property
    def rounding(self) -> str:
        return self._rounding

    @property
    def e_width(self) -> int:
        """Width of the clamped SI-exp outputs ``e`` in the row buffer."""
        return self._e_width

    @property
    def vth_width(self) -> int:
        """Width of the row sum ``Vth``: exact for n_max values of ``e``."""
        return self._e_width + ceil_log2(self._n_max)

    def row_latency(self, n: int) -> int:
        """Cycles from the transfer of a row's first score to the transfer of its first count,
        for a row of n scores when neither side stalls."""
        check_int("n", n, minimum=1, maximum=self._n_max)
        norm = self._q + 2
        # Max stage: the row's n scores, then read, fetch and subtract. Then the row's n
        # exps (register slice, SI-exp latency K + 1, the last one written to the E buffer),
        # then read, fetch and the register slice into SI-norm.
        front = n + 3 if self._subtract_max else 0
        # The iterative SI-exp takes K cycles per score instead of one.
        exp = n * self.K - (self.K - 1) if self._variant == "iterative" else n
        return front + exp + self.K + norm + 5

    @property
    def latency(self) -> int:
        """:meth:`row_latency` of the longest row, n_max."""
        return self.row_latency(self._n_max)

    @property
    def throughput(self) -> float:
        """Scores accepted per cycle for rows back to back (one row of n per n cycles, or per
        n·max(K, q + 1) cycles for the iterative variant)."""
        return 1.0 if self._variant == "unrolled" else 1 / max(self.K, self._q + 1)

    def input_beats(self, rows) -> list[dict]:
        """Input payloads for ``rows`` (lists of integer scores), rows back to back: one beat
        per score, ``last`` on each row's final score."""
        return [{"x": int(x), "last": int(j == len(row) - 1)}
                for row in rows for j, x in enumerate(row)]

    def reference_outputs(self, rows) -> list[dict]:
        """Output payloads the golden twin (:func:`golden.softmax.spiking_softmax`) gives for
        ``rows``, with a row longer than ``n_max`` cut into pieces as the core cuts it."""
        out = []
        for row in rows:
            pieces = [row[i:i + self._n_max] for i in range(0, len(row), self._n_max)]
            for p, piece in enumerate(pieces):
                counts = spiking_softmax(torch.tensor(piece, dtype=torch.int64), self._table,
                                         self._N, subtract_max=self._subtract_max,
                                         rounding=self._rounding).counts.tolist()
                for j, c in enumerate(counts):
                    end = j == len(piece) - 1
                    out.append({"c": c, "last": int(end),
                                "cut": int(end and p < len(pieces) - 1)})
        return out

    def elaborate(self, platform):
        m = Module()
        t = self._table
        index_width = max(1, ceil_log2(self._n_max))
        m.submodules.exp = exp = SIExp(K=t.K, lo=t.range[0], hi=t.range[1], table=t,
                                       variant=self._variant, tag_width=_TAG.size)
        m.submodules.norm = norm = SINorm(e_width=self._e_width, n_max=self._n_max, N=self._N,
                                          rounding=self._rounding, tag_width=_TAG.size,
                                          variant="iterative" if self._variant == "iterative"
                                          else "pipelined")
        # Register slices in front of both pipelines: their ready is a register, so the
        # stall of a pipeline does not travel combinationally into the buffer control.
        m.submodules.exp_slice = exp_in = RegisterSlice(exp.i.payload.shape())
        m.submodules.norm_slice = norm_in = RegisterSlice(norm.i.payload.shape())
        wiring.connect(m, exp_in.o, exp.i)
        wiring.connect(m, norm_in.o, norm.i)
        exp_tag = _TAG(exp_in.i.payload.tag)

        if self._subtract_max:
            x, ready = self._max_stage(m, index_width)
            m.d.comb += [exp_in.i.valid.eq(x.valid), exp_in.i.payload.x.eq(x.payload.x),
                         exp_tag.eq(x.payload.tag), x.ready.eq(exp_in.i.ready)]
            m.d.comb += self.i.ready.eq(ready)
        else:
            count = Signal(range(self._n_max))
            full = count == self._n_max - 1
            m.d.comb += [
                exp_in.i.valid.eq(self.i.valid),
                exp_in.i.payload.x.eq(self.i.payload.x),
                exp_tag.last.eq(self.i.payload.last | full),
                exp_tag.cut.eq(full & ~self.i.payload.last),
                self.i.ready.eq(exp_in.i.ready),
            ]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += count.eq(Mux(self.i.payload.last | full, 0, count + 1))

        self._norm_stage(m, exp, norm, norm_in, index_width)
        return m

    def _max_stage(self, m, index_width):
        """Row buffer X with running maximum; returns the stream of saturated differences
        (a local ``{valid, ready, payload: {x, tag}}`` bundle) and the input's ready."""
        fmt = self._table.input_format
        width = self._x_width
        m.submodules.x_buffer = buffer = memory.Memory(
            shape=signed(width), depth=2 << index_width, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        full = Array(Signal(name=f"x_full_{b}") for b in range(2))
        end = Array(Signal(index_width, name=f"x_end_{b}", reset_less=True) for b in range(2))
        # A maximum is kept unresolved, as the latest score, the maximum before it and whether
        # the latest is greater: the update then compares against a multiplexer of registers
        # and needs no multiplexer behind its carry chain.
        max_layout = data.StructLayout({"latest": signed(width), "before": signed(width),
                                        "latest_wins": 1})
        row_max = Array(Signal(max_layout, name=f"x_max_{b}", reset_less=True)
                        for b in range(2))
        cut = Array(Signal(name=f"x_cut_{b}", reset_less=True) for b in range(2))

        def resolve(maximum):
            return Mux(maximum.latest_wins, maximum.latest, maximum.before)

        # Producer: the input stream.
        bank, index = Signal(), Signal(index_width)
        # Each row starts from the smallest score, so the first score needs no special case.
        minimum = -(1 << (width - 1))
        running = Signal(max_layout, init={"latest": minimum, "before": minimum})
        x, last = self.i.payload.x, self.i.payload.last
        accept = Signal()
        piece_end = Signal()
        so_far = Signal(signed(width))
        new_max = Signal(max_layout)
        m.d.comb += [
            accept.eq(self.i.valid & ~full[bank]),
            piece_end.eq(last | (index == self._n_max - 1)),
            so_far.eq(resolve(running)),
            # x > so_far is the sign of so_far - x: the carry chain ends in a sum bit.
            new_max.eq(Cat(x, so_far, (so_far - x)[-1])),
            write.addr.eq(Cat(index, bank)),
            write.data.eq(x),
            write.en.eq(accept),
        ]
        with m.If(accept):
            m.d.sync += [running.eq(new_max), index.eq(index + 1)]
            with m.If(piece_end):
                m.d.sync += [full[bank].eq(1), end[bank].eq(index), row_max[bank].eq(new_max),
                             cut[bank].eq(~last), bank.eq(~bank), index.eq(0),
                             running.eq(running.shape().const({"latest": minimum,
                                                               "before": minimum}))]

        # Consumer: read (issue), fetch, subtract; all advance together.
        r_bank, r_index = Signal(), Signal(index_width)
        valid = [Signal(name=f"xr_valid_{s}") for s in range(3)]
        tag = [Signal(_TAG, name=f"xr_tag_{s}", reset_less=True) for s in range(3)]
        # The row maximum, inverted: the subtraction then adds it as it is.
        max_inv = [Signal(signed(width), name=f"xr_max_inv_{s}", reset_less=True)
                   for s in range(2)]
        fetched = Signal(signed(width), reset_less=True)
        difference = Signal(signed(width + 1), reset_less=True)
        advance, issue, is_last = Signal(), Signal(), Signal()
        out = stream.Signature(data.StructLayout({"x": signed(fmt.width), "tag": _TAG})).create(
            path=("x_read",))
        # x - max <= 0 fits the format unless the bits above its sign differ from it.
        top = difference[fmt.width - 1:]
        below = Signal()
        m.d.comb += below.eq(~(top.all() | ~top.any()))
        m.d.comb += [
            advance.eq(~valid[2] | out.ready),
            issue.eq(advance & full[r_bank]),
            is_last.eq(r_index == end[r_bank]),
            read.addr.eq(Cat(r_index, r_bank)),
            read.en.eq(advance),
            out.valid.eq(valid[2]),
            # x - max <= 0; below the format it saturates to its minimum, which SI-exp
            # clamps to lo like any other value below the range (the golden model's clamp).
            out.payload.x.eq(Mux(below, fmt.min_int, difference[:fmt.width])),
            out.payload.tag.eq(tag[2]),
        ]
        # x - max as x + ~max + 1, the 1 carried in through an extra low bit: both operands
        # come straight from registers.
        wide = Cat(Const(1), fetched, fetched[-1]) + Cat(Const(1), max_inv[1], max_inv[1][-1])
        with m.If(advance):
            m.d.sync += [
                valid[0].eq(full[r_bank]),
                tag[0].last.eq(is_last),
                tag[0].cut.eq(is_last & cut[r_bank]),
                max_inv[0].eq(~resolve(row_max[r_bank])),
                valid[1].eq(valid[0]), tag[1].eq(tag[0]), max_inv[1].eq(max_inv[0]),
                fetched.eq(read.data),
                valid[2].eq(valid[1]), tag[2].eq(tag[1]),
                difference.eq(wide[1:width + 2]),
            ]
        with m.If(issue):
            m.d.sync += r_index.eq(r_index + 1)
            with m.If(is_last):
                m.d.sync += [full[r_bank].eq(0), r_bank.eq(~r_bank), r_index.eq(0)]
        return out, ~full[bank]

    def _norm_stage(self, m, exp, norm, norm_in, index_width):
        """Row buffer E with the row sums, and SI-norm reading it back."""
        e_width, vth_width = self._e_width, self.vth_width
        m.submodules.e_buffer = buffer = memory.Memory(
            shape=unsigned(e_width), depth=2 << index_width, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        full = Array(Signal(name=f"e_full_{b}") for b in range(2))
        end = Array(Signal(index_width, name=f"e_end_{b}", reset_less=True) for b in range(2))
        vth = Array(Signal(vth_width, name=f"e_vth_{b}", reset_less=True) for b in range(2))
        cut = Array(Signal(name=f"e_cut_{b}", reset_less=True) for b in range(2))

        # Producer: SI-exp results, clamped at 0, written to the bank and added to the row
        # sum. A trained table may dip below 0; the clamp is generated only if the table's
        # exact output range goes below 0. The sum adds the raw result and keeps the old sum
        # when it is negative: the carry chain then starts at registers.
        bank, index = Signal(), Signal(index_width)
        # Reset with the control state: a reset in mid-row must not leave a partial sum.
        total = Signal(vth_width)
        out = exp.o.payload.out
        tag = _TAG(exp.o.payload.tag)
        negative = out[-1] if self._table.output_range[0] < 0 else Const(0)
        new_total = Signal(vth_width)
        write_now = Signal()
        m.d.comb += [
            new_total.eq(Mux(negative, total, total + out)),
            exp.o.ready.eq(~full[bank]),
            write_now.eq(exp.o.valid & ~full[bank]),
            write.addr.eq(Cat(index, bank)),
            write.data.eq(Mux(negative, 0, out)),
            write.en.eq(write_now),
        ]
        with m.If(write_now):
            m.d.sync += [total.eq(new_total), index.eq(index + 1)]
            with m.If(tag.last):
                m.d.sync += [full[bank].eq(1), end[bank].eq(index), vth[bank].eq(new_total),
                             cut[bank].eq(tag.cut), bank.eq(~bank), index.eq(0), total.eq(0)]

        # Consumer: read (issue) and fetch into SI-norm; both advance together.
        r_bank, r_index = Signal(), Signal(index_width)
        valid = [Signal(name=f"er_valid_{s}") for s in range(2)]
        r_tag = [Signal(_TAG, name=f"er_tag_{s}", reset_less=True) for s in range(2)]
        r_vth = [Signal(vth_width, name=f"er_vth_{s}", reset_less=True) for s in range(2)]
        fetched = Signal(e_width, reset_less=True)
        advance, issue, is_last = Signal(), Signal(), Signal()
        m.d.comb += [
            advance.eq(~valid[1] | norm_in.i.ready),
            issue.eq(advance & full[r_bank]),
            is_last.eq(r_index == end[r_bank]),
            read.addr.eq(Cat(r_index, r_bank)),
            read.en.eq(advance),
            norm_in.i.valid.eq(valid[1]),
            norm_in.i.payload.e.eq(fetched),
            norm_in.i.payload.vth.eq(r_vth[1]),
            norm_in.i.payload.tag.eq(r_tag[1]),
        ]
        with m.If(advance):
            m.d.sync += [
                valid[0].eq(full[r_bank]),
                r_tag[0].last.eq(is_last),
                r_tag[0].cut.eq(is_last & cut[r_bank]),
                r_vth[0].eq(vth[r_bank]),
                valid[1].eq(valid[0]), r_tag[1].eq(r_tag[0]), r_vth[1].eq(r_vth[0]),
                fetched.eq(read.data),
            ]
        with m.If(issue):
            m.d.sync += r_index.eq(r_index + 1)
            with m.If(is_last):
                m.d.sync += [full[r_bank].eq(0), r_bank.eq(~r_bank), r_index.eq(0)]

        norm_tag = _TAG(norm.o.payload.tag)
        m.d.comb += [
            self.o.valid.eq(norm.o.valid),
            self.o.payload.c.eq(norm.o.payload.c),
            self.o.payload.last.eq(norm_tag.last),
            self.o.payload.cut.eq(norm_tag.cut),
            norm.o.ready.eq(self.o.ready),
        ]
