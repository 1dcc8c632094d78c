"""Spiking attention head core; golden twin :func:`golden.attention.attention_head`.

One head of the integer spiking attention (numeric contracts D4, D7, D8), bit for bit::

    SQ, SK, SV += decoded Q_t, K_t, V_t             (running sums, site units)
    P  = SQ·SKᵀ,  C_t = floor(P / t)                 (matmul-ECM of the scores)
    X  = floor((2·C_t·M + (t << shift)) / (t << (shift + 1)))   ((M, shift) = score_constant)
    x  = max(X − rowmax(X), input-format min)         (softmax_input = "max")
    c  = SI-norm(SI-exp(x))                           (SpikingSoftmax, counts out of N)
    s_in = t·c_t − (t−1)·c_(t−1);  A_t = MT_s(s_in)   (softmax-ECM, MT at the probabilities)
    SA += decoded A_t;  P2 = SA·SV;  C2_t = floor(P2 / t)
    out_t = MT_out(C2_t − C2_(t−1))                   (matmul-ECM with V, MT at the output)

The products are never formed with multipliers: both running products are updated
incrementally per step from the spikes, ``P += Q_t·SK_tᵀ + SQ_(t−1)·K_tᵀ`` and
``P2 += A_t·SV_t + SA_(t−1)·V_t``, where every factor of the form ``code`` is ``±2**k``
shifted by the site's exponent offset: a shift and an optional negation (a "shift-add").
``lanes`` shift-add pairs run per cycle. Divisions by ``t`` use a sequential restoring divider
(one quotient bit per cycle); the constant ``M`` is a sum of shifted copies; ``t·c`` is a sum of
copies of ``c`` selected by the bits of ``t``.

Architecture: one sequential controller over memories with asynchronous read ports
(:class:`amaranth.lib.memory.Memory`, ``domain="comb"``), all state kept per (token, token) or
(token, dim) in memories: running sums SQ, SK, SV, products P and P2, probability sums SA,
previous cumulative probabilities, previous C2, and the membranes of both MT sites. A step
whose first token beat has ``first = 1`` (or the first step after reset) starts a new head:
then every stored value is read as 0, so no clearing cycles are needed. Phases per step: input
(n beats), score products, then per row i: scores and two divisions per entry, the row through
:class:`~hwgen.cores.softmax.SpikingSoftmax` (``subtract_max=False``: the max is subtracted
here on the wide X), MT at the probabilities and the P2 update per entry, then per output
element a division, the cumulative difference and the output MT, and the row's output beat.
"""

from __future__ import annotations

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.attention import HeadConfig
from golden.fixed import check_int
from golden.mt_neuron import mt_thresholds

from .softmax import SpikingSoftmax

__all__ = ["AttentionHead", "default_head_config"]


def _signed_width(bound: int) -> int:
    """Bits of a signed integer holding every value in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)


def default_head_config() -> HeadConfig:
    """The registry default: 4 tokens, head_dim 4, T = 4, 4 levels, the shipped K = 12 table
    on [-8, 0], N = 256, score_scale 0.5."""
    from golden.si_exp import shipped_table
    e = (-2, -2)
    return HeadConfig(tokens=4, head_dim=4, time_steps=4, levels=4, q_exponents=e,
                      k_exponents=e, v_exponents=e, s_exponents=(-3, -3), out_exponents=e,
                      table=shipped_table(12, -8.0, 0.0), N=256, score_scale=0.5)


class _FloorDivider(wiring.Component):
    """``quotient = floor(dividend / divisor)`` for a signed dividend and a divisor >= 1, by
    restoring division, one quotient bit per cycle: a pulse on ``start`` registers the
    operands, ``busy`` is high for ``width - 1`` cycles, then ``quotient`` holds until the
    next start. A negative dividend ``a`` is divided as ``~a = -a - 1 >= 0`` and the quotient
    complemented: ``floor(a / t) = ~floor(~a / t)``."""

    def __init__(self, width: int, divisor_width: int):
        self._width, self._dw = max(2, width), divisor_width
        super().__init__({
            "start": In(1), "dividend": In(signed(self._width)), "divisor": In(divisor_width),
            "busy": Out(1), "quotient": Out(signed(self._width)),
        })

    def elaborate(self, platform):
        m = Module()
        w, dw = self._width, self._dw
        mag = Signal(w - 1, reset_less=True)
        rem = Signal(dw + 1, reset_less=True)
        t = Signal(dw, reset_less=True)
        neg = Signal(reset_less=True)
        count = Signal(range(w))
        a = self.dividend
        with m.If(self.start):
            m.d.sync += [mag.eq(Mux(a[-1], ~a, a)[:w - 1]), rem.eq(0), neg.eq(a[-1]),
                         t.eq(self.divisor), count.eq(w - 1), self.busy.eq(1)]
        with m.Elif(self.busy):
            shifted = Cat(mag[-1], rem)
            ge = shifted >= t
            m.d.sync += [rem.eq(Mux(ge, shifted - t, shifted)), mag.eq(Cat(ge, mag[:-1])),
                         count.eq(count - 1), self.busy.eq(count != 1)]
        q = Cat(mag, C(0, 1)).as_signed()
        m.d.comb += self.quotient.eq(Mux(neg, ~q, q))
        return m


class AttentionHead(wiring.Component):
    """One spiking attention head, bit-exact with :func:`golden.attention.attention_head`
    (``softmax="spiking"``, ``softmax_input="max"``).

    Code encoding: an MT code (0 or ±2**k, k < levels) is carried as a small two's complement
    integer of ``levels + 1`` bits (:attr:`code_width`), the code's own value.

    Streams: ``i`` carries ``{q, k, v: ArrayLayout(signed(levels + 1), head_dim), first: 1}``,
    one beat per token per time step, tokens in order 0..n-1; ``first = 1`` on the token beats
    of the first step of a new head (it restarts the running sums at t = 1; the core reads it
    on token 0). ``o`` carries ``{out: ArrayLayout(signed(levels + 1), head_dim), last: 1}``,
    one beat per token per time step in token order (``last`` on token n-1), the output MT
    codes of that token; a step's outputs start after all its inputs have arrived, and the
    next step's inputs are accepted once the step's last output beat has been taken. Heads
    have at most ``time_steps`` steps (the widths are derived from that bound; a longer head
    is not supported).

    Cycles per time step, neither side stalling (:meth:`step_cycles`, measured in
    tests/test_cores_attention_sim)::

        n + n²·ceil(d / lanes) + n·R,
        R = 1 + n·(1 + Wc + Wx) + L_sm + n·(1 + ceil(d / lanes)) + d·(1 + Wo) + 1

    with (Wc, Wx, Wo) the widths of the three dividends divided by t (:attr:`divider_widths`;
    a division takes width - 1 cycles) and ``L_sm = n + K + q + 7`` the softmax row latency.
    The n input beats of a step are accepted on n consecutive cycles; the first output beat
    follows ``n + n²·ceil(d / lanes) + R - 1`` cycles after the first input (:attr:`latency`).
    Throughput: n tokens per :meth:`step_cycles` cycles (no overlap of steps or rows). No
    multipliers: codes are shifts, ``M`` a constant sum of shifts, ``t·c`` a sum of shifts
    selected by the bits of t; the only constant multiplies are the memory addresses
    ``i·n + j`` and ``i·d + l``.

    Parameters
    ----------
    config : HeadConfig or None
        The head (tokens, head_dim, time_steps, levels, exponents, table, N, score_scale,
        rounding, scale_bits); softmax must be "spiking" and softmax_input "max". None takes
        :func:`default_head_config`.
    lanes : int
        Code-driven shift-add pairs per cycle in the P and P2 updates (1 to head_dim).
    """

    def __init__(self, config: HeadConfig | None = None, *, lanes: int = 1):
        if config is None:
            config = default_head_config()
        if not isinstance(config, HeadConfig):
            raise TypeError(f"config must be a HeadConfig, not {type(config).__name__}")
        if config.softmax != "spiking":
            raise ValueError(f"config.softmax must be 'spiking' for the attention core, not "
                             f"{config.softmax!r}")
        if config.softmax_input != "max":
            raise ValueError(f"config.softmax_input must be 'max' for the attention core, not "
                             f"{config.softmax_input!r}")
        check_int("lanes", lanes, minimum=1, maximum=config.head_dim)
        if config.tokens > 256 or config.head_dim > 256:
            raise ValueError(f"tokens and head_dim must be at most 256 for this core, not "
                             f"tokens={config.tokens}, head_dim={config.head_dim}")
        self._config, self._lanes = config, lanes
        self._derive()
        cw = self.code_width
        codes = data.ArrayLayout(signed(cw), config.head_dim)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"q": codes, "k": codes, "v": codes,
                                                        "first": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"out": codes, "last": 1}))),
        })

    # -- derived widths ---------------------------------------------------------------------

    def _derive(self):
        c = self._config
        n, d, T, L = c.tokens, c.head_dim, c.time_steps, c.levels
        top = 1 << (L - 1)

        def site(exps):
            u = min(exps)
            return exps[0] - u, exps[1] - u  # left shifts of positive / negative codes

        self._sq, self._sk, self._sv, self._ss = (site(e) for e in (
            c.q_exponents, c.k_exponents, c.v_exponents, c.s_exponents))
        vq, vk, vv, vs = (top << max(s) for s in (self._sq, self._sk, self._sv, self._ss))
        self._sum_w = {"q": _signed_width(T * vq), "k": _signed_width(T * vk),
                       "v": _signed_width(T * vv), "a": _signed_width(T * vs)}
        p_max = d * (T * vq) * (T * vk)
        self._p_w = _signed_width(p_max)
        M, shift = c.score_constant
        self._M, self._shift = M, shift
        y_max = 2 * p_max * M + (T << shift)
        self._y_w = _signed_width(y_max)
        z_max = (y_max >> (shift + 1)) + 1
        self._z_w = _signed_width(z_max)
        self._x_w = self._z_w  # |X| <= |Z|
        fmt = c.table.input_format
        self._fmt = fmt
        # Softmax-ECM: counts c <= N, cumulative t·c <= T·N.
        q = c.q
        self._cum_w = (T * c.N).bit_length()
        s_max = T * c.N
        # MT at the probabilities (golden.attention.mt_site with in_unit = -q).
        self._s_shift = max(0, 1 - (min(c.s_exponents) + q))
        self._s_lam = tuple(1 << (e + q + self._s_shift) for e in c.s_exponents)
        xs_max = s_max << self._s_shift
        self._vs_w = _signed_width(T * xs_max + max(self._s_lam) * (2 << L))
        p2_max = n * (T * vs) * (T * vv)
        self._p2_w = _signed_width(p2_max)
        self._o_unit = min(c.s_exponents) + min(c.v_exponents)
        self._o_shift = max(0, 1 - (min(c.out_exponents) - self._o_unit))
        self._o_lam = tuple(1 << (e - self._o_unit + self._o_shift) for e in c.out_exponents)
        xo_max = (2 * p2_max) << self._o_shift
        self._vo_w = _signed_width(T * xo_max + max(self._o_lam) * (2 << L))
        self._t_w = max(1, T.bit_length())
        self._chunks = -(-d // self._lanes)

    @property
    def config(self) -> HeadConfig:
        return self._config

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def code_width(self) -> int:
        """Bits of one code on the streams: ``levels + 1`` (two's complement)."""
        return self._config.levels + 1

    @property
    def widths(self) -> dict:
        """Widths of the internal registers and memories (signed unless noted)."""
        return {"SQ": self._sum_w["q"], "SK": self._sum_w["k"], "SV": self._sum_w["v"],
                "SA": self._sum_w["a"], "P": self._p_w, "Y": self._y_w, "X": self._x_w,
                "P2": self._p2_w, "cum (unsigned)": self._cum_w, "V_s": self._vs_w,
                "V_out": self._vo_w}

    @property
    def divider_widths(self) -> tuple[int, int, int]:
        """Dividend widths (Wc, Wx, Wo) of the three divisions by t: P, Y >> (shift + 1), P2.
        Each division takes width - 1 cycles."""
        return self._p_w, self._z_w, self._p2_w

    def softmax_core(self) -> SpikingSoftmax:
        c = self._config
        return SpikingSoftmax(n_max=c.tokens, K=c.table.K, table=c.table, N=c.N,
                              subtract_max=False, rounding=c.rounding)

    def _row_cycles(self) -> int:
        """Cycles of one row i, from its ROW state to its output beat (included)."""
        c = self._config
        n, d = c.tokens, c.head_dim
        wc, wx, wo = self.divider_widths
        probe = self.softmax_core()
        probe._MustUse__silence = True  # built only to ask for its latency
        sm = probe.row_latency(n)
        return (1                              # ROW
                + n * (1 + wc + wx)            # per entry: start, divide P (wc), divide Y (wx)
                + sm                           # feed the row; its first count sm cycles later
                + n * (1 + self._chunks)       # per count: MT, then the P2 update
                + d * (1 + wo)                 # per output element: start, divide, MT
                + 1)                           # the output beat

    def step_cycles(self) -> int:
        """Cycles from the acceptance of a step's first input beat to the acceptance of the
        next step's first input beat when neither side stalls (measured in the simulator
        test): ``n + n²·ceil(d / lanes) + n·R`` with the row time
        ``R = 1 + n·(1 + Wc + Wx) + L_sm + n·(1 + ceil(d / lanes)) + d·(1 + Wo) + 1``,
        (Wc, Wx, Wo) = :attr:`divider_widths` and ``L_sm = n + K + q + 7`` the
        SpikingSoftmax row latency without max subtraction."""
        c = self._config
        n = c.tokens
        return n + n * n * self._chunks + n * self._row_cycles()

    @property
    def latency(self) -> int:
        """Cycles from the acceptance of a step's first input beat to the transfer of its first
        output beat when neither side stalls: ``n + n²·ceil(d / lanes) + R - 1``."""
        n = self._config.tokens
        return n + n * n * self._chunks + self._row_cycles() - 1

    @property
    def throughput(self) -> float:
        """Input beats (tokens) accepted per cycle for steps back to back: n / step_cycles."""
        return self._config.tokens / self.step_cycles()

    # -- datapath helpers --------------------------------------------------------------------

    def _decode(self, code, shifts):
        """Value of a code in site units: ``code << shift`` per sign."""
        sp, sn = shifts
        return Mux(code > 0, code << sp, code << sn)

    def _times_code(self, x, code, shifts):
        """``x`` times the value of ``code`` (0 or ±2**k shifted by the site): a mux of
        shifted copies of ``x`` and a negation; no multiplier."""
        sp, sn = shifts
        result = C(0, 1)
        for k in range(self._config.levels):
            result = Mux(code == (1 << k), x << (k + sp),
                         Mux(code == -(1 << k), -(x << (k + sn)), result))
        return result

    def _mt(self, u, lambdas, shape):
        """Multi-threshold decision on the potential ``u``: (code, emitted value), highest
        level first, positive before negative (golden.mt_neuron)."""
        L = self._config.levels
        pos, neg = mt_thresholds(lambdas[0], lambdas[1], L)
        code, emit = C(0, signed(L + 1)), C(0, shape)
        for k in range(L):
            code = Mux(u >= pos[k], C(1 << k, signed(L + 1)),
                       Mux(u <= neg[k], C(-(1 << k), signed(L + 1)), code))
            emit = Mux(u >= pos[k], C(lambdas[0] << k, shape),
                       Mux(u <= neg[k], C(-(lambdas[1] << k), shape), emit))
        return code, emit

    @staticmethod
    def _pick(row, index, length):
        """Element ``index`` of an array view ``row`` of ``length`` elements, 0 past its end."""
        elements = [row[l] for l in range(length)]
        return Mux(index < length, Array(elements)[index], 0)

    @staticmethod
    def _times_t(value, t):
        """``value · t`` as a sum of shifted copies selected by the bits of t."""
        total = C(0, 1)
        for b in range(len(t)):
            total = total + Mux(t[b], value << b, 0)
        return total

    def _times_M(self, value):
        """``value · M`` as a constant sum of shifted copies."""
        total = C(0, 1)
        for b in range(self._M.bit_length()):
            if (self._M >> b) & 1:
                total = total + (value << b)
        return total

    # -- elaboration -------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        c = self._config
        n, d, L, lanes, chunks = c.tokens, c.head_dim, c.levels, self._lanes, self._chunks
        cw = self.code_width
        fmt = self._fmt

        def mem(name, shape, depth):
            mm = memory.Memory(shape=shape, depth=depth, init=[])
            m.submodules[name] = mm
            return mm

        def row_layout(width):
            return data.ArrayLayout(signed(width), d)

        cur_m = mem("cur", self.i.payload.shape(), n)
        sq_m = mem("sq", row_layout(self._sum_w["q"]), n)
        sk_m = mem("sk", row_layout(self._sum_w["k"]), n)
        sv_m = mem("sv", row_layout(self._sum_w["v"]), n)
        p_m = mem("p", signed(self._p_w), n * n)
        cum_m = mem("cum", unsigned(self._cum_w), n * n)
        vs_m = mem("v_s", signed(self._vs_w), n * n)
        sa_m = mem("sa", signed(self._sum_w["a"]), n * n)
        p2_m = mem("p2", row_layout(self._p2_w + 2), n)  # partial row sums <= 4·P2_max
        c2_m = mem("c2", signed(self._p2_w), n * d)
        vo_m = mem("v_out", signed(self._vo_w), n * d)

        cur_w, cur_ri, cur_rj = cur_m.write_port(), cur_m.read_port(domain="comb"), \
            cur_m.read_port(domain="comb")
        sq_w, sq_r = sq_m.write_port(), sq_m.read_port(domain="comb")
        sk_w, sk_r = sk_m.write_port(), sk_m.read_port(domain="comb")
        sv_w, sv_r = sv_m.write_port(), sv_m.read_port(domain="comb")
        ports = {}
        for name, mm in (("p", p_m), ("cum", cum_m), ("vs", vs_m), ("sa", sa_m), ("p2", p2_m),
                         ("c2", c2_m), ("vo", vo_m)):
            ports[name] = (mm.write_port(), mm.read_port(domain="comb"))

        m.submodules.softmax = sm = self.softmax_core()
        m.submodules.div_c = div_c = _FloorDivider(self._p_w, self._t_w)
        m.submodules.div_x = div_x = _FloorDivider(self._z_w, self._t_w)
        m.submodules.div_o = div_o = _FloorDivider(self._p2_w, self._t_w)

        # Control registers.
        t = Signal(self._t_w + 1)
        fresh = Signal()  # t == 1: every stored value reads as 0
        i = Signal(range(max(2, n)))
        j = Signal(range(max(2, n)))
        ch = Signal(range(max(2, chunks)))
        el = Signal(range(max(2, d)))
        acc = Signal(signed(self._p_w + 2))  # partial sums: |P_(t-1)| + |terms| <= 4·P_max
        xrow = Array(Signal(signed(self._x_w), name=f"x_{k}", reset_less=True) for k in range(n))
        x_max = Signal(signed(self._x_w))
        a_code = Signal(signed(cw))
        sa_old = Signal(signed(self._sum_w["a"]))
        out_codes = Array(Signal(signed(cw), name=f"out_{k}", reset_less=True)
                          for k in range(d))

        m.d.comb += [div_c.divisor.eq(t), div_x.divisor.eq(t), div_o.divisor.eq(t)]
        # Read addresses: rows i and j; products i·n + j and i·d + el (constant multiplies).
        ij = Signal(range(n * n))
        il = Signal(range(n * d))
        m.d.comb += [ij.eq(i * n + j), il.eq(i * d + el)]
        m.d.comb += [cur_ri.addr.eq(i), cur_rj.addr.eq(j), sq_r.addr.eq(i), sk_r.addr.eq(j),
                     sv_r.addr.eq(j)]
        for name in ("p", "cum", "vs", "sa"):
            w, r = ports[name]
            m.d.comb += [w.addr.eq(ij), r.addr.eq(ij)]
        for name in ("c2", "vo"):
            w, r = ports[name]
            m.d.comb += [w.addr.eq(il), r.addr.eq(il)]
        p2_w, p2_r = ports["p2"]
        m.d.comb += [p2_w.addr.eq(i), p2_r.addr.eq(i), sq_w.addr.eq(i), sk_w.addr.eq(j),
                     sv_w.addr.eq(j), cur_w.addr.eq(j)]

        def old(value):
            """A stored value as the step sees it: 0 in the first step of a head."""
            return Mux(fresh, 0, value)

        with m.FSM(name="phase"):
            with m.State("IN"):
                # Token j's codes: store them, and add K and V into SK and SV at once.
                m.d.comb += self.i.ready.eq(1)
                p = self.i.payload
                first_step = Signal()
                m.d.comb += first_step.eq(Mux(j == 0, p.first | (t == 0), fresh))
                with m.If(self.i.valid):
                    m.d.comb += [cur_w.data.eq(p), cur_w.en.eq(1), sk_w.en.eq(1),
                                 sv_w.en.eq(1)]
                    for l in range(d):
                        m.d.comb += [
                            sk_w.data[l].eq(Mux(first_step, 0, sk_r.data[l])
                                            + self._decode(p.k[l], self._sk)),
                            sv_w.data[l].eq(Mux(first_step, 0, sv_r.data[l])
                                            + self._decode(p.v[l], self._sv)),
                        ]
                    with m.If(j == 0):
                        m.d.sync += [t.eq(Mux(p.first, 1, t + 1)),
                                     fresh.eq(p.first | (t == 0))]
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == n - 1):
                        m.d.sync += [i.eq(0), j.eq(0), ch.eq(0)]
                        m.next = "PMAC"

            with m.State("PMAC"):
                # P[i][j] += Σ_l Q_t[i][l]·SK_t[j][l] + SQ_(t-1)[i][l]·K_t[j][l], lanes a cycle.
                qrow, krow = cur_ri.data.q, cur_rj.data.k
                total = Mux(ch == 0, old(ports["p"][1].data), acc)
                for lane in range(lanes):
                    idx = ch * lanes + lane
                    total = total + self._times_code(self._pick(sk_r.data, idx, d),
                                                     self._pick(qrow, idx, d), self._sq)
                    total = total + self._times_code(old(self._pick(sq_r.data, idx, d)),
                                                     self._pick(krow, idx, d), self._sk)
                m.d.sync += acc.eq(total)
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == chunks - 1):
                    m.d.sync += ch.eq(0)
                    m.d.comb += [ports["p"][0].data.eq(total), ports["p"][0].en.eq(1)]
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == n - 1):
                        # Row i of the products is complete: SQ[i] may now take Q_t[i].
                        m.d.comb += sq_w.en.eq(1)
                        for l in range(d):
                            m.d.comb += sq_w.data[l].eq(old(sq_r.data[l])
                                                        + self._decode(qrow[l], self._sq))
                        m.d.sync += [j.eq(0), i.eq(i + 1)]
                        with m.If(i == n - 1):
                            m.d.sync += i.eq(0)
                            m.next = "ROW"

            with m.State("ROW"):
                m.d.sync += j.eq(0)
                m.next = "DIV_C"

            with m.State("DIV_C"):
                m.d.comb += [div_c.start.eq(1), div_c.dividend.eq(ports["p"][1].data)]
                m.next = "WAIT_C"

            with m.State("WAIT_C"):
                with m.If(~div_c.busy):
                    # Y = 2·C·M + (t << shift); X = floor((Y >> (shift + 1)) / t).
                    y = Signal(signed(self._y_w))
                    m.d.comb += y.eq((self._times_M(div_c.quotient) << 1) + (t << self._shift))
                    m.d.comb += [div_x.start.eq(1), div_x.dividend.eq(y >> (self._shift + 1))]
                    m.next = "WAIT_X"

            with m.State("WAIT_X"):
                with m.If(~div_x.busy):
                    xq = div_x.quotient
                    m.d.sync += xrow[j].eq(xq)
                    with m.If((j == 0) | (xq > x_max)):
                        m.d.sync += x_max.eq(xq)
                    m.d.sync += j.eq(j + 1)
                    m.next = "DIV_C"
                    with m.If(j == n - 1):
                        m.d.sync += j.eq(0)
                        m.next = "FEED"

            with m.State("FEED"):
                diff = Signal(signed(self._x_w + 1))
                m.d.comb += [
                    diff.eq(xrow[j] - x_max),
                    sm.i.valid.eq(1),
                    sm.i.payload.x.eq(Mux(diff < fmt.min_int, fmt.min_int, diff)),
                    sm.i.payload.last.eq(j == n - 1),
                ]
                with m.If(sm.i.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == n - 1):
                        m.d.sync += j.eq(0)
                        m.next = "COUNT"

            with m.State("COUNT"):
                # s_in = t·c_t − (t−1)·c_(t−1); MT at the probabilities; SA += A.
                m.d.comb += sm.o.ready.eq(1)
                with m.If(sm.o.valid):
                    cum = Signal(self._cum_w)
                    s_in = Signal(signed(self._cum_w + 1))
                    m.d.comb += [cum.eq(self._times_t(sm.o.payload.c, t)),
                                 s_in.eq(cum - old(ports["cum"][1].data))]
                    shape = signed(self._vs_w)
                    u = Signal(shape)
                    m.d.comb += u.eq(old(ports["vs"][1].data) + (s_in << self._s_shift))
                    code, emit = self._mt(u, self._s_lam, shape)
                    sa = Signal(signed(self._sum_w["a"]))
                    m.d.comb += sa.eq(old(ports["sa"][1].data))
                    m.d.comb += [
                        ports["cum"][0].data.eq(cum), ports["cum"][0].en.eq(1),
                        ports["vs"][0].data.eq(u - emit), ports["vs"][0].en.eq(1),
                        ports["sa"][0].data.eq(sa + self._decode(code, self._ss)),
                        ports["sa"][0].en.eq(1),
                    ]
                    m.d.sync += [a_code.eq(code), sa_old.eq(sa), ch.eq(0)]
                    m.next = "P2MAC"

            with m.State("P2MAC"):
                # P2[i][l] += A_t[i][j]·SV_t[j][l] + SA_(t−1)[i][j]·V_t[j][l], lanes per cycle.
                raw = p2_r.data
                zero = fresh & (j == 0)
                vrow = cur_rj.data.v
                sums = []
                for lane in range(lanes):
                    idx = ch * lanes + lane
                    sums.append(Mux(zero, 0, self._pick(raw, idx, d))
                                + self._times_code(self._pick(sv_r.data, idx, d), a_code,
                                                   self._ss)
                                + self._times_code(sa_old, self._pick(vrow, idx, d),
                                                   self._sv))
                for l in range(d):
                    m.d.comb += p2_w.data[l].eq(Mux(ch == l // lanes, sums[l % lanes], raw[l]))
                m.d.comb += p2_w.en.eq(1)
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == chunks - 1):
                    m.d.sync += [ch.eq(0), j.eq(j + 1)]
                    m.next = "COUNT"
                    with m.If(j == n - 1):
                        m.d.sync += [j.eq(0), el.eq(0)]
                        m.next = "DIV_O"

            with m.State("DIV_O"):
                m.d.comb += [div_o.start.eq(1), div_o.dividend.eq(p2_r.data[el])]
                m.next = "WAIT_O"

            with m.State("WAIT_O"):
                with m.If(~div_o.busy):
                    c2 = div_o.quotient
                    o = Signal(signed(self._p2_w + 1))
                    m.d.comb += o.eq(c2 - old(ports["c2"][1].data))
                    shape = signed(self._vo_w)
                    u = Signal(shape)
                    m.d.comb += u.eq(old(ports["vo"][1].data) + (o << self._o_shift))
                    code, emit = self._mt(u, self._o_lam, shape)
                    m.d.comb += [
                        ports["c2"][0].data.eq(c2), ports["c2"][0].en.eq(1),
                        ports["vo"][0].data.eq(u - emit), ports["vo"][0].en.eq(1),
                    ]
                    m.d.sync += [out_codes[el].eq(code), el.eq(el + 1)]
                    m.next = "DIV_O"
                    with m.If(el == d - 1):
                        m.d.sync += el.eq(0)
                        m.next = "EMIT"

            with m.State("EMIT"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.last.eq(i == n - 1)]
                for l in range(d):
                    m.d.comb += self.o.payload.out[l].eq(out_codes[l])
                with m.If(self.o.ready):
                    m.d.sync += i.eq(i + 1)
                    m.next = "ROW"
                    with m.If(i == n - 1):
                        m.d.sync += [i.eq(0), j.eq(0)]
                        m.next = "IN"
        return m
