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

No product is formed with a multiplier. Both running products are updated per step from the
spikes, ``P += Q_t·SK_tᵀ + SQ_(t−1)·K_tᵀ`` and ``P2 += A_t·SV_t + SA_(t−1)·V_t``, where each
factor named by a code is ``±2**k`` shifted by its site's exponent offset: a shift and an
optional negation (a "shift-add"). The constant ``M`` is a signed-digit sum of shifts, ``t·c``
a sum of copies of ``c`` selected by the bits of ``t``, and the divisions by ``t`` are
pipelined restoring dividers (t is small: a few bits per quotient step).

Dataflow of one step, after its n input beats are stored::

    score MAC (rows i, columns j) ─► ÷t ─► ·M, ÷t ─► SpikingSoftmax (max subtraction, wide x)
      ─► MT at the probabilities (per count) ─► probability row buffer (2 banks)
      ─► output MAC (row i) ─► ÷t, MT at the output (per lane) ─► output beat register

The score MAC walks (i, j) and the d dimensions ``lanes`` at a time: one P[i][j] every
``ceil(d / lanes)`` cycles. The output MAC of row i starts as soon as row i's probabilities
are buffered and walks (dimension chunk, j), so it overlaps the score MAC of later rows. State
lives in :class:`amaranth.lib.memory.Memory` with registered read ports (block RAM on iCE40 and
ECP5); the vectors of d values are split over ``lanes`` banks. A step whose first token beat
has ``first = 1`` (or the first step after reset) starts a new head: every stored value is
then read as 0, so no clearing cycles are needed.
"""

from __future__ import annotations

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.attention import HeadConfig, check_codes
from golden.fixed import check_int

from .softmax import SpikingSoftmax

__all__ = ["AttentionHead", "HEADS", "default_head_config", "digits_head_config"]

#: Most restoring-division steps per cycle of a divider by t (four steps are about the
#: longest path the iCE40 takes at 30 MHz).
DIVIDER_STEPS = 4


def _signed_width(bound: int) -> int:
    """Bits of a signed integer holding every value in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)


def _signed_digits(value: int) -> list[tuple[int, int]]:
    """Non-adjacent form of ``value > 0``: (sign, shift) pairs with ``Σ sign·2**shift =
    value`` and the fewest nonzero digits."""
    digits, shift = [], 0
    while value:
        if value & 1:
            digit = 2 - (value & 3)  # +1 or -1
            digits.append((digit, shift))
            value -= digit
        value >>= 1
        shift += 1
    return digits


def default_head_config() -> HeadConfig:
    """The registry default: 4 tokens, head_dim 4, T = 4, 4 levels, the shipped K = 12 table
    on [-8, 0], N = 256, score_scale 0.5."""
    from golden.si_exp import shipped_table
    e = (-2, -2)
    return HeadConfig(tokens=4, head_dim=4, time_steps=4, levels=4, q_exponents=e,
                      k_exponents=e, v_exponents=e, s_exponents=(-3, -3), out_exponents=e,
                      table=shipped_table(12, -8.0, 0.0), N=256, score_scale=0.5)


def digits_head_config() -> HeadConfig:
    """The head of the digits ViT (golden.vit_digits) as converted by ``python -m golden
    vit-digits --int``: 16 tokens, head_dim 16, T = 8, 8 levels, score_scale 1/4, the shipped
    K = 12 table on [-8, 0], N = 256, and the λ exponents its first block calibrates to
    (tests/test_cocotb_attention.py checks them against the converted model)."""
    from golden.si_exp import shipped_table
    return HeadConfig(tokens=16, head_dim=16, time_steps=8, levels=8, q_exponents=(1, 1),
                      k_exponents=(1, 0), v_exponents=(0, 0), s_exponents=(-7, -7),
                      out_exponents=(-1, -1), table=shipped_table(12, -8.0, 0.0), N=256,
                      score_scale=0.25)


#: Named heads for the command line (``--param head=NAME``).
HEADS = {"default": default_head_config, "digits": digits_head_config}


def divider_plan(quotient_bits: int, interval: int) -> tuple[int, int, bool]:
    """``(steps per cycle, latency, iterative)`` of :class:`_Divider` for quotients of
    ``quotient_bits`` magnitude bits and values at least ``interval`` cycles apart: iterative
    with as few steps per cycle as the interval allows when it allows at most
    :data:`DIVIDER_STEPS`, otherwise a pipeline of :data:`DIVIDER_STEPS` steps per stage."""
    steps = max(1, quotient_bits)
    per_cycle = -(-steps // interval)
    iterative = per_cycle <= DIVIDER_STEPS
    if not iterative:
        per_cycle = DIVIDER_STEPS
    return per_cycle, -(-steps // per_cycle), iterative


class _Divider(wiring.Component):
    """``quotient = floor(dividend / divisor)`` for a signed dividend and a divisor >= 1 that is
    held constant while values are in flight, by restoring division, a few quotient bits per
    cycle (:func:`divider_plan`). Every value takes the planned latency in cycles with ``en``
    high from ``i_valid`` to ``o_valid`` (a one-cycle pulse), and ``tag`` travels along.

    ``interval`` is the fewest cycles with ``en`` high between two input values. When it
    leaves the time, one stretch of steps is reused (iterative: a value's registers and the
    logic of a few steps); otherwise the steps are unrolled into a pipeline that takes a value
    every cycle. A negative dividend ``a`` is divided as ``~a = -a - 1 >= 0`` and the quotient
    complemented: ``floor(a / t) = ~floor(~a / t)``.

    ``quotient_bits`` bounds the quotient's magnitude (``|floor(a / t)| < 2**quotient_bits``,
    from the caller's value ranges): the division then starts with the dividend's bits above
    them as the remainder (below t by that bound) and takes one step per quotient bit."""

    def __init__(self, width: int, divisor_width: int, tag_shape, *, interval: int,
                 quotient_bits: int):
        self._width, self._dw = max(2, width), divisor_width
        self._steps, self._latency, self._iterative = divider_plan(quotient_bits, interval)
        super().__init__({
            "en": In(1, init=1), "divisor": In(divisor_width),
            "i_valid": In(1), "dividend": In(signed(self._width)), "i_tag": In(tag_shape),
            "o_valid": Out(1), "quotient": Out(signed(self._width)), "o_tag": Out(tag_shape),
        })

    def elaborate(self, platform):
        m = Module()
        w, dw, latency = self._width, self._dw, self._latency
        # One step per bit of ``bits``: the dividend's bits above them start as the remainder.
        bits = latency * self._steps
        state = data.StructLayout({"neg": 1, "mag": bits, "rem": dw, "tag": self.i_tag.shape()})
        a = self.dividend
        magnitude = Signal(max(w - 1, bits + dw))
        entering = Signal(state)
        m.d.comb += [magnitude.eq(Mux(a[-1], ~a, a)[:w - 1]),
                     entering.neg.eq(a[-1]), entering.mag.eq(magnitude[:bits]),
                     entering.rem.eq(magnitude[bits:bits + dw]), entering.tag.eq(self.i_tag)]

        def stretch(value):
            """One cycle's restoring steps: (mag, rem) after them. A step is one subtraction:
            its borrow says whether the divisor fits."""
            mag, rem = value.mag, value.rem
            for _ in range(self._steps):
                shifted = Cat(mag[-1], rem)
                difference = Cat(shifted, C(0, 1)) - self.divisor
                fits = ~difference[-1]
                rem = Mux(fits, difference, shifted)[:dw]
                mag = Cat(fits, mag[:-1])
            return mag, rem

        def advance_to(target, source):
            mag, rem = stretch(source)
            return [target.neg.eq(source.neg), target.mag.eq(mag), target.rem.eq(rem),
                    target.tag.eq(source.tag)]

        if self._iterative:
            current = Signal(state, reset_less=True)
            done = Signal(range(latency + 1))  # stretches applied to ``current``; 0: empty
            with m.If(self.en):
                with m.If(self.i_valid):
                    m.d.sync += [*advance_to(current, entering), done.eq(1)]
                with m.Elif((done != 0) & (done != latency)):
                    m.d.sync += [*advance_to(current, current), done.eq(done + 1)]
                with m.Elif(done == latency):
                    m.d.sync += done.eq(0)
            valid = done == latency
        else:
            valid, current = self.i_valid, entering
            for k in range(latency):
                registered = Signal(state, name=f"stage_{k}", reset_less=True)
                registered_valid = Signal(name=f"stage_{k}_valid")
                with m.If(self.en):
                    m.d.sync += [*advance_to(registered, current), registered_valid.eq(valid)]
                valid, current = registered_valid, registered
        q = Cat(current.mag, C(0, 1)).as_signed()
        m.d.comb += [self.o_valid.eq(valid), self.quotient.eq(Mux(current.neg, ~q, q)),
                     self.o_tag.eq(current.tag)]
        return m


class AttentionHead(wiring.Component):
    """One spiking attention head, bit-exact with :func:`golden.attention.attention_head`
    (``softmax="spiking"``, ``softmax_input="max"``).

    Code encoding: an MT code (0 or ±2**k, k < levels) is carried as a two's complement integer
    of ``levels + 1`` bits (:attr:`code_width`), the code's own value.

    Streams: ``i`` carries ``{q, k, v: ArrayLayout(signed(levels + 1), head_dim), first: 1}``,
    one beat per token per time step, tokens in order 0..n-1; ``first = 1`` on the token beats
    of the first step of a new head (it restarts the running sums at t = 1; the core reads it
    on token 0; after a reset the first step is new anyway). ``o`` carries
    ``{out: ArrayLayout(signed(levels + 1), head_dim), last: 1}``, one beat per token per time
    step in token order (``last`` on token n-1): the output MT codes of that token. A step's
    inputs are accepted after the previous step's last output beat was taken. ``overrun``
    rises (and stays up until reset or the next ``first``) when a head runs longer than
    ``time_steps`` steps: the widths hold only that many, so its outputs are not valid.

    Timing, neither side stalling (:meth:`step_cycles`, :attr:`latency`; exact in
    tests/test_cores_attention_sim.py and measured on Verilator by tests/test_cocotb_attention),
    with ``ch = ceil(d / lanes)``: input beats are accepted one per ch cycles (a beat's d
    codes are stored over ch cycles). Counting from the step's last input beat, row r
    (0-based) of the scores enters the softmax at ``S_r = (r + 1)·n·ch + Lc + Lx + 6``, its
    probabilities are complete at ``S_r + L_sm + 4``, its output MAC starts then (or once the
    previous row's MAC is done, ``+ n·ch + 1``, and the previous output beat was sent,
    ``+ 1``) and its output beat leaves ``n·ch + Lo + 8`` cycles after that start. Lc, Lx, Lo
    are the divider latencies (:attr:`divider_latencies`, :func:`divider_plan`) and ``L_sm``
    the softmax row latency with max subtraction, ``2n + K + q + 10``, plus
    ``(n - 1)·(K - 1)``, and ``(n - 1)·q`` more to the row's last count, when
    ``ch >= max(K, q + 1)`` selects the iterative softmax. The next step's first beat is
    accepted ch cycles after the last output beat: ``step_cycles = (n - 1)·ch + (last row's
    beat) + ch``, and ``latency = step_cycles - ch``. With one output beat register,
    consecutive rows' output MACs start ``n·ch + Lo + 9`` cycles apart, so a step takes about
    ``n·ch + S_0 + L_sm + n·(n·ch + Lo + 9)``, i.e. ``n²·d / lanes + O(n·d / lanes + n·K +
    n·log2 N + n·Lo)``: within the target ``2·n²·d / lanes + O(n·K + n·log2 N)`` (Lo does not
    depend on lanes: it grows with the output width and shrinks as n gives the divider more
    cycles per value; 11 for the digits head, 4 for the default head). Digits head (n = d = 16):
    5,312 cycles at lanes 1 (2·n²·d = 8,192), 1,557 at lanes 4 (2,048), 693 at lanes 16
    (512 + 16·(K + log2 N) = 832).

    Parameters
    ----------
    config : HeadConfig or None
        The head (tokens, head_dim, time_steps, levels, exponents, table, N, score_scale,
        rounding, scale_bits); softmax must be "spiking" and softmax_input "max". None takes
        the named head ``head``.
    lanes : int
        Dimensions per cycle in both MACs (1 to head_dim): each lane is a pair of code-driven
        shift-adds in either MAC and an output divider with its MT neuron.
    head : str
        Named head used when config is None (with a config, leave it at "default"):
        "default" (n = 4, d_h = 4, T = 4, 4 levels: :func:`default_head_config`) or "digits"
        (the digits ViT's head: :func:`digits_head_config`).
    """

    def __init__(self, config: HeadConfig | None = None, *, lanes: int = 1,
                 head: str = "default"):
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        if config is None:
            config = HEADS[head]()
        elif head != "default":
            raise ValueError(f"give either config or head, not both (head={head!r})")
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
        codes = data.ArrayLayout(signed(self.code_width), config.head_dim)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"q": codes, "k": codes, "v": codes,
                                                        "first": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"out": codes, "last": 1}))),
            "overrun": Out(1),
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
        # |P_t| <= d·t²·vq·vk, so |C_t| <= d·t·vq·vk and the mean |C_t / t| <= d·vq·vk.
        c_max = d * T * vq * vk
        self._c_w = _signed_width(c_max + 1)  # floor: one more below
        y_max = 2 * c_max * M + (T << shift)
        self._y_w = _signed_width(y_max)
        self._z_w = _signed_width((y_max >> (shift + 1)) + 1)
        self._x_w = max(c.table.input_format.width,
                        _signed_width(((2 * d * vq * vk * M) >> (shift + 1)) + 2))
        # Softmax-ECM: counts c <= N, cumulative t·c <= T·N.
        q = c.q
        self._cum_w = (T * c.N).bit_length()
        # MT at the probabilities (golden.attention.mt_site with in_unit = -q).
        self._s_shift = max(0, 1 - (min(c.s_exponents) + q))
        self._s_lam = tuple(1 << (e + q + self._s_shift) for e in c.s_exponents)
        # The MT inputs telescope (their sum up to t is t·c_t <= T·N here and C2_t below), so
        # a membrane stays within that sum plus what T steps can emit.
        self._vs_w = _signed_width((T * c.N << self._s_shift) + T * max(self._s_lam) * (2 << L))
        p2_max = n * (T * vs) * (T * vv)
        self._p2_w = _signed_width(p2_max)
        o_unit = min(c.s_exponents) + min(c.v_exponents)
        self._o_shift = max(0, 1 - (min(c.out_exponents) - o_unit))
        self._o_lam = tuple(1 << (e - o_unit + self._o_shift) for e in c.out_exponents)
        c2_max = n * T * vs * vv + 1  # |C2_t| = |floor(P2_t / t)| <= n·t·vs·vv + 1
        self._c2_w = _signed_width(c2_max)
        self._vo_w = _signed_width((c2_max << self._o_shift) + T * max(self._o_lam) * (2 << L))
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
                "P2": self._p2_w, "C2": self._c2_w, "cum (unsigned)": self._cum_w, "V_s": self._vs_w,
                "V_out": self._vo_w, "t (unsigned)": self._t_w + 1,
                "stored code (unsigned)": self._log_layout().size}

    @property
    def score_constant_digits(self) -> list[tuple[int, int]]:
        """The score constant M (:attr:`HeadConfig.score_constant`) as the (sign, shift) digits
        of its non-adjacent form: the core's multiplier adds or subtracts one shifted copy per
        digit."""
        return _signed_digits(self._M)

    @property
    def chunks(self) -> int:
        """``ceil(head_dim / lanes)``: cycles per token beat in either MAC."""
        return self._chunks

    @property
    def divider_widths(self) -> tuple[int, int, int]:
        """Dividend widths (Wc, Wx, Wo) of the three divisions by t: P, Y >> (shift + 1), P2."""
        return self._p_w, self._z_w, self._p2_w

    @property
    def _divider_intervals(self) -> tuple[int, int, int]:
        """Fewest cycles between two values of the three dividers: scores come every ch
        cycles; each output lane gets a value every n cycles."""
        return self._chunks, self._chunks, self._config.tokens

    def _divider_plans(self):
        return [divider_plan(q, i) for q, i in zip(self._quotient_bits, self._divider_intervals)]

    @property
    def _quotient_bits(self) -> tuple[int, int, int]:
        """Magnitude bits of the three quotients C, X and C2 (their signed widths - 1)."""
        return self._c_w - 1, self._x_w - 1, self._c2_w - 1

    @property
    def divider_latencies(self) -> tuple[int, int, int]:
        """Latencies (Lc, Lx, Lo) of the three dividers in cycles."""
        return tuple(plan[1] for plan in self._divider_plans())

    @property
    def divider_steps(self) -> tuple[int, int, int]:
        """Restoring steps per cycle of the three dividers."""
        return tuple(plan[0] for plan in self._divider_plans())

    def softmax_core(self) -> SpikingSoftmax:
        c = self._config
        return SpikingSoftmax(n_max=c.tokens, K=c.table.K, table=c.table, N=c.N,
                              subtract_max=True, rounding=c.rounding,
                              variant="iterative" if self._iterative_softmax else "unrolled",
                              x_width=self._x_w)

    @property
    def _iterative_softmax(self) -> bool:
        """One score arrives every ch cycles: with ch >= max(K, q + 1) the much smaller
        iterative SI-exp and SI-norm keep up."""
        c = self._config
        return self._chunks >= max(c.table.K, c.q + 1)

    def _softmax_latency(self) -> int:
        probe = self.softmax_core()
        probe._MustUse__silence = True  # built only to ask for its latency
        return probe.row_latency(self._config.tokens)

    def step_cycles(self) -> int:
        """Cycles from the acceptance of a step's first input beat to the acceptance of the
        next step's first input beat when neither side stalls (see the class docstring)."""
        n, ch = self._config.tokens, self._chunks
        return (n - 1) * ch + self._schedule()[-1] + ch

    def _schedule(self) -> list[int]:
        """The cycle each row's output beat leaves, counted from the transfer of the step's
        last input beat, with neither side stalling: the timing of the pipeline stages."""
        n, ch = self._config.tokens, self._chunks
        lc, lx, lo = self.divider_latencies
        row_mac = n * ch
        softmax_latency = self._softmax_latency()
        sent = []
        for r in range(n):
            # Row r's last score enters the softmax, its last count is taken by the MT at
            # the probabilities, and its probability row is complete three cycles later.
            into_softmax = (r + 1) * row_mac + lc + lx + 6
            complete = into_softmax + softmax_latency + 4
            if self._iterative_softmax:
                complete += (n - 1) * self._config.q  # one count per q + 1 cycles
            # The row's output MAC starts once the beat register is free (then the output MAC,
            # which finished row_mac + lo + 8 cycles before, is free too).
            start = complete if r == 0 else max(complete, sent[-1] + 1)
            sent.append(start + row_mac + lo + 8)
        return sent

    @property
    def latency(self) -> int:
        """Cycles from the acceptance of a step's first input beat to the transfer of its
        last output beat when neither side stalls: ``step_cycles() - ch``."""
        return self.step_cycles() - self._chunks

    @property
    def throughput(self) -> float:
        """Input beats (tokens) accepted per cycle for steps back to back: n / step_cycles."""
        return self._config.tokens / self.step_cycles()

    def input_beats(self, q, k, v) -> list[dict]:
        """Input payloads of one head from its MT codes ``q, k, v`` of shape (steps, tokens,
        head_dim), steps <= time_steps: step major, token minor, ``first`` on step 0."""
        c = self._config
        codes = [check_codes(name, x, c.levels) for name, x in (("q", q), ("k", k), ("v", v))]
        for name, x in zip("qkv", codes):
            if x.dim() != 3 or x.shape[1:] != (c.tokens, c.head_dim) \
                    or not 1 <= x.shape[0] <= c.time_steps:
                raise ValueError(f"{name} must have shape (steps, {c.tokens}, {c.head_dim}) with "
                                 f"1 <= steps <= {c.time_steps}, not {tuple(x.shape)}")
        if not codes[0].shape == codes[1].shape == codes[2].shape:
            raise ValueError(f"q, k and v must have one shape, not "
                             f"{', '.join(str(tuple(x.shape)) for x in codes)}")
        q, k, v = (x.tolist() for x in codes)
        return [{"q": q[t][j], "k": k[t][j], "v": v[t][j], "first": int(t == 0)}
                for t in range(len(q)) for j in range(c.tokens)]

    def output_beats(self, out) -> list[dict]:
        """Output payloads for the codes ``out`` of shape (steps, tokens, head_dim) that
        :func:`golden.attention.attention_head` returns, in stream order."""
        n = self._config.tokens
        return [{"out": row, "last": int(j == n - 1)} for step in out.tolist()
                for j, row in enumerate(step)]

    # -- datapath helpers --------------------------------------------------------------------

    def _log_layout(self):
        """A code inside the core: ``nonzero``, ``neg`` and ``k`` of ``±2**k``."""
        return data.StructLayout({"nonzero": 1, "neg": 1,
                                  "k": max(1, ceil_log2(self._config.levels))})

    def _to_log(self, m, code, name):
        """The log form of a stream code (a two's complement ``±2**k`` or 0)."""
        L = self._config.levels
        log = Signal(self._log_layout(), name=name)
        magnitude = Mux(code[-1], -code, code)[:L]
        m.d.comb += [log.nonzero.eq(code != 0), log.neg.eq(code[-1]),
                     log.k.eq(self._encode(magnitude))]
        return log

    @staticmethod
    def _encode(one_hot):
        """Index of the set bit of a one-hot (or zero) value: an OR per index bit."""
        bits = max(1, ceil_log2(len(one_hot)))
        return Cat(*(Cat(*(one_hot[k] for k in range(len(one_hot)) if (k >> b) & 1)).any()
                     if any((k >> b) & 1 for k in range(len(one_hot))) else C(0, 1)
                     for b in range(bits)))

    def _decode(self, log, shifts):
        """Value of a code in site units: ``±1 << (k + site shift)``."""
        sp, sn = shifts
        return Mux(log.nonzero, Mux(log.neg, -(C(1 << sn) << log.k), C(1 << sp) << log.k), 0)

    def _times_code(self, x, log, shifts):
        """``x`` times the value of a code: a barrel shift by k and a negation; no
        multiplier."""
        sp, sn = shifts
        shifted = Mux(log.neg, x << sn, x << sp) << log.k
        return Mux(log.nonzero, Mux(log.neg, -shifted, shifted), 0)

    def _mt(self, m, u, lambdas, name):
        """Multi-threshold decision on the potential ``u`` (golden.mt_neuron), over two cycles:
        returns (stream code, log code, emitted value, ``u``, the level's one-hot values
        (up, down)), all one cycle after ``u``.
        λ = 2**e with e >= 1, so the level-k thresholds ``±2**(e-1)·(2**(k+1) - 1)`` are
        crossed when ``floor(|u| / 2**(e-1)) + 1`` reaches ``2**(k+1)``: the level is the top
        set bit of that sum, found with an increment (registered) and OR gates instead of
        2·levels comparators."""
        L = self._config.levels
        ep, en = (lam.bit_length() - 1 for lam in lambdas)
        width = len(u)
        pos_scaled = Signal(width + 1, name=f"{name}_pos", reset_less=True)
        neg_scaled = Signal(width + 1, name=f"{name}_neg", reset_less=True)
        u_next = Signal(u.shape(), name=f"{name}_u", reset_less=True)
        m.d.sync += [pos_scaled.eq((u >> (ep - 1)) + 1), neg_scaled.eq(((-u) >> (en - 1)) + 1),
                     u_next.eq(u)]
        u = u_next
        negative = u[-1]

        def levels_of(scaled, fires):
            """One-hot level of the highest threshold crossed (0 if none)."""
            above = [scaled[k + 1:].any() for k in range(L)]
            return Cat(*((above[k] & ~above[k + 1]) if k + 1 < L else above[k]
                         for k in range(L))) & fires.replicate(L)

        up = levels_of(pos_scaled, ~negative)
        down = levels_of(neg_scaled, negative)
        code = Signal(signed(self.code_width), name=f"{name}_code")
        emit = Signal(signed(width), name=f"{name}_emit")
        log = Signal(self._log_layout(), name=f"{name}_log")
        m.d.comb += [
            code.eq(Mux(up.any(), up, Mux(down.any(), -down, 0))),
            emit.eq(Mux(up.any(), up << ep, Mux(down.any(), -(down << en), 0))),
            log.nonzero.eq(up.any() | down.any()), log.neg.eq(down.any()),
            log.k.eq(self._encode(up | down)),
        ]
        return code, log, emit, u, (up, down)

    @staticmethod
    def _times_t(value, t):
        """``value · t`` as a sum of shifted copies selected by the bits of t."""
        total = C(0, 1)
        for b in range(len(t)):
            total = total + Mux(t[b], value << b, 0)
        return total

    def _times_M(self, value):
        """``value · M`` as a signed-digit sum of shifted copies: w(M) − 1 adds. The top digit
        of a positive M is +1 and goes first (synthesis folds the 0 + copy), so no copy needs a
        negation of its own."""
        total = C(0, 1)
        for sign, shift in reversed(self.score_constant_digits):
            total = total + (value << shift) if sign > 0 else total - (value << shift)
        return total

    # -- elaboration -------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        c = self._config
        n, d, lanes, ch = c.tokens, c.head_dim, self._lanes, self._chunks
        cw = self.code_width

        def mems(name, shape, depth, count=1):
            """``count`` memories with a write port and a registered read port each."""
            ports = []
            for b in range(count):
                mm = memory.Memory(shape=shape, depth=max(2, depth), init=[])
                m.submodules[f"{name}{b}" if count > 1 else name] = mm
                ports.append((mm.write_port(), mm.read_port()))
            return ports

        def element(lane, chunk):
            """Dimension of a lane in a chunk (past d in the last chunk when lanes ∤ d)."""
            return chunk * lanes + lane

        # Per lane bank b, dimension l = chunk·lanes + b of token r is at r·ch + chunk.
        log = self._log_layout()
        qc = mems("q_codes", log, n * ch, lanes)
        kc = mems("k_codes", log, n * ch, lanes)
        vc = mems("v_codes", log, n * ch, lanes)
        sq = mems("sq", signed(self._sum_w["q"]), n * ch, lanes)
        sk = mems("sk", signed(self._sum_w["k"]), n * ch, lanes)
        sv = mems("sv", signed(self._sum_w["v"]), n * ch, lanes)
        p2 = mems("p2", signed(self._p2_w), n * ch, lanes)
        c2 = mems("c2", signed(self._c2_w), n * ch, lanes)
        vo = mems("v_out", signed(self._vo_w), n * ch, lanes)
        # Per score (i, j) at i·n + j.
        (p_w, p_r), = mems("p", signed(self._p_w), n * n)
        (cum_w, cum_r), = mems("cum", unsigned(self._cum_w), n * n)
        (vs_w, vs_r), = mems("v_s", signed(self._vs_w), n * n)
        (sa_w, sa_r), = mems("sa", signed(self._sum_w["a"]), n * n)
        # Probability rows for the output MAC: bank r % 2, entry j: the code and SA_(t-1).
        prob_layout = data.StructLayout({"code": log, "sa_old": signed(self._sum_w["a"])})
        row_bits = max(1, ceil_log2(n))
        (prob_w, prob_r), = mems("prob_rows", prob_layout, 2 << row_bits)

        # -- step control and input ---------------------------------------------------------
        issuing = Signal()  # the score MAC has entries left this step
        t = Signal(self._t_w + 1)
        fresh = Signal()  # the step is the first of its head: stored values read as 0
        running = Signal()  # a step is being computed
        in_token = Signal(range(max(2, n)))
        in_chunk = Signal(range(max(2, ch)))
        beat = self.i.payload
        m.d.comb += self.i.ready.eq(~running & (in_chunk == ch - 1))
        for b in range(lanes):
            for ports, codes, site in ((qc, beat.q, "q"), (kc, beat.k, "k"), (vc, beat.v, "v")):
                write, _ = ports[b]
                # Dimensions past d (lanes ∤ d) hold code 0: they add nothing anywhere.
                picks = [codes[element(b, k)] if element(b, k) < d else C(0, signed(cw))
                         for k in range(ch)]
                m.d.comb += [write.addr.eq(in_token * ch + in_chunk),
                             write.data.eq(self._to_log(m, Array(picks)[in_chunk],
                                                        f"in_{site}_{b}")),
                             write.en.eq(~running & self.i.valid)]
        with m.If(~running & self.i.valid):
            m.d.sync += in_chunk.eq(in_chunk + 1)
            with m.If(in_chunk == ch - 1):
                m.d.sync += [in_chunk.eq(0), in_token.eq(in_token + 1)]
                with m.If(in_token == 0):
                    new_head = beat.first | (t == 0)
                    # t stops at time_steps + 1: a wrap to 0 would start a head unasked.
                    past_end = t == c.time_steps + 1
                    m.d.sync += [t.eq(Mux(new_head, 1, Mux(past_end, t, t + 1))),
                                 fresh.eq(new_head)]
                    with m.If(new_head):
                        m.d.sync += self.overrun.eq(0)
                    with m.Elif(t == c.time_steps):
                        m.d.sync += self.overrun.eq(1)
                with m.If(in_token == n - 1):
                    # The step's inputs are stored: the score MAC starts.
                    m.d.sync += [in_token.eq(0), running.eq(1), issuing.eq(1)]

        def old(value):
            """A stored value as the step sees it: 0 in the first step of a head."""
            return Mux(fresh, 0, value)

        # -- score MAC: P[i][j] += Σ_l Q_t[i][l]·SK_t[j][l] + SQ_(t-1)[i][l]·K_t[j][l] -------
        m.submodules.softmax = sm = self.softmax_core()
        advance = Signal()  # the score pipeline moves (the softmax takes its beat)
        tag = data.StructLayout({"valid": 1, "i": range(max(2, n)), "j": range(max(2, n)),
                                 "chunk": range(max(2, ch))})
        issue_i = Signal(range(max(2, n)))
        issue_j = Signal(range(max(2, n)))
        issue_ch = Signal(range(max(2, ch)))
        s1, s2, s3 = (Signal(tag, name=f"score_{s}") for s in (1, 2, 3))
        for b in range(lanes):
            for ports in (qc, sq):
                m.d.comb += [ports[b][1].addr.eq(issue_i * ch + issue_ch), ports[b][1].en.eq(advance)]
            for ports in (kc, sk):
                m.d.comb += [ports[b][1].addr.eq(issue_j * ch + issue_ch), ports[b][1].en.eq(advance)]
        with m.If(advance):
            m.d.sync += [s1.valid.eq(issuing), s1.i.eq(issue_i), s1.j.eq(issue_j),
                         s1.chunk.eq(issue_ch), s2.eq(s1), s3.eq(s2)]
            with m.If(issuing):
                m.d.sync += issue_ch.eq(issue_ch + 1)
                with m.If(issue_ch == ch - 1):
                    m.d.sync += [issue_ch.eq(0), issue_j.eq(issue_j + 1)]
                    with m.If(issue_j == n - 1):
                        m.d.sync += [issue_j.eq(0), issue_i.eq(issue_i + 1)]
                        with m.If(issue_i == n - 1):
                            m.d.sync += [issue_i.eq(0), issuing.eq(0)]
        # Stage 1: the running sums after this step's codes; written back on their last use.
        sk_new = [Signal(signed(self._sum_w["k"]), name=f"sk_new_{b}", reset_less=True)
                  for b in range(lanes)]
        sq_old = [Signal(signed(self._sum_w["q"]), name=f"sq_old_{b}", reset_less=True)
                  for b in range(lanes)]
        q_code = [Signal(log, name=f"q_code_{b}", reset_less=True) for b in range(lanes)]
        k_code = [Signal(log, name=f"k_code_{b}", reset_less=True) for b in range(lanes)]
        for b in range(lanes):
            k_now = kc[b][1].data
            sk_sum = old(sk[b][1].data) + self._decode(k_now, self._sk)
            sq_sum = old(sq[b][1].data) + self._decode(qc[b][1].data, self._sq)
            m.d.comb += [
                sk[b][0].addr.eq(s1.j * ch + s1.chunk), sk[b][0].data.eq(sk_sum),
                sk[b][0].en.eq(advance & s1.valid & (s1.i == n - 1)),
                sq[b][0].addr.eq(s1.i * ch + s1.chunk), sq[b][0].data.eq(sq_sum),
                sq[b][0].en.eq(advance & s1.valid & (s1.j == n - 1)),
            ]
            with m.If(advance):
                m.d.sync += [sk_new[b].eq(sk_sum), sq_old[b].eq(old(sq[b][1].data)),
                             q_code[b].eq(qc[b][1].data), k_code[b].eq(k_now)]
        # Stage 2: the shift-adds of the lanes.
        terms = Signal(signed(self._p_w + 1), reset_less=True)
        total = C(0, 1)
        for b in range(lanes):
            total = (total + self._times_code(sk_new[b], q_code[b], self._sq)
                     + self._times_code(sq_old[b], k_code[b], self._sk))
        with m.If(advance):
            m.d.sync += terms.eq(total)
        # Stage 3: accumulate onto P_(t-1), read with the address of stage 2. A partial sum
        # P_(t-1) + terms can exceed the largest P (by less than 4 times).
        acc = Signal(signed(self._p_w + 2), reset_less=True)
        m.d.comb += [p_r.addr.eq(s2.i * n + s2.j), p_r.en.eq(advance)]
        p_new = Signal(signed(self._p_w + 2))
        m.d.comb += p_new.eq(Mux(s3.chunk == 0, old(p_r.data), acc) + terms)
        p_done = Signal()
        m.d.comb += [p_done.eq(s3.valid & (s3.chunk == ch - 1)),
                     p_w.addr.eq(s3.i * n + s3.j), p_w.data.eq(p_new),
                     p_w.en.eq(advance & p_done)]
        with m.If(advance):
            m.d.sync += acc.eq(p_new)

        # -- scores into the softmax: C = floor(P / t), X = floor(floor((2CM + (t << sh)) /
        # 2**(sh + 1)) / t) --------------------------------------------------------------
        last_tag = unsigned(1)
        # One score per ch cycles: the dividers are iterative when that leaves them the time.
        (interval_c, interval_x, interval_o), (bits_c, bits_x, bits_o) = \
            self._divider_intervals, self._quotient_bits
        m.submodules.div_c = div_c = _Divider(self._p_w, self._t_w + 1, last_tag,
                                              interval=interval_c, quotient_bits=bits_c)
        m.submodules.div_x = div_x = _Divider(self._z_w, self._t_w + 1, last_tag,
                                              interval=interval_x, quotient_bits=bits_x)
        # P is registered first: the accumulator's carry chain does not run into the divider.
        p_final = Signal(signed(self._p_w), reset_less=True)
        p_valid, p_last = Signal(), Signal(reset_less=True)
        with m.If(advance):
            m.d.sync += [p_final.eq(p_new), p_valid.eq(p_done), p_last.eq(s3.j == n - 1)]
        m.d.comb += [div_c.en.eq(advance), div_c.divisor.eq(t), div_c.i_valid.eq(p_valid),
                     div_c.dividend.eq(p_final), div_c.i_tag.eq(p_last),
                     div_x.en.eq(advance), div_x.divisor.eq(t)]
        z = Signal(signed(self._z_w), reset_less=True)
        z_valid, z_last = Signal(), Signal(reset_less=True)
        y = (self._times_M(div_c.quotient) << 1) + (t << self._shift)
        with m.If(advance):
            m.d.sync += [z.eq(y >> (self._shift + 1)), z_valid.eq(div_c.o_valid),
                         z_last.eq(div_c.o_tag)]
        m.d.comb += [div_x.i_valid.eq(z_valid), div_x.dividend.eq(z), div_x.i_tag.eq(z_last)]
        x_valid, x_last = Signal(), Signal(reset_less=True)
        x = Signal(signed(self._x_w), reset_less=True)
        with m.If(advance):
            m.d.sync += [x_valid.eq(div_x.o_valid), x.eq(div_x.quotient), x_last.eq(div_x.o_tag)]
        m.d.comb += [sm.i.valid.eq(x_valid), sm.i.payload.x.eq(x), sm.i.payload.last.eq(x_last),
                     advance.eq(~x_valid | sm.i.ready)]

        # -- MT at the probabilities: s_in = t·c_t − (t−1)·c_(t−1), per count ---------------
        count_i = Signal(range(max(2, n)))
        count_j = Signal(range(max(2, n)))
        owned = Signal(2)     # a probability row bank is being filled or waits for the MAC
        complete = Signal(2)  # a probability row bank is full
        take = Signal()
        m.d.comb += [sm.o.ready.eq((count_j != 0) | ~owned.bit_select(count_i[0], 1)),
                     take.eq(sm.o.valid & sm.o.ready)]
        index = count_i * n + count_j
        for port in (cum_r, vs_r, sa_r):
            m.d.comb += port.addr.eq(index)
        pm = data.StructLayout({"valid": 1, "i": range(max(2, n)), "j": range(max(2, n)),
                                "index": range(max(2, n * n))})
        c1, c2_ = Signal(pm, name="count_1"), Signal(pm, name="count_2")
        cum = Signal(self._cum_w, reset_less=True)
        m.d.sync += [c1.valid.eq(take), c1.i.eq(count_i), c1.j.eq(count_j), c1.index.eq(index),
                     c2_.eq(c1)]
        with m.If(take):
            m.d.sync += cum.eq(self._times_t(sm.o.payload.c, t))
            m.d.sync += count_j.eq(count_j + 1)
            with m.If(count_j == n - 1):
                m.d.sync += [count_j.eq(0), count_i.eq(Mux(count_i == n - 1, 0, count_i + 1))]
        u_s = Signal(signed(self._vs_w), reset_less=True)
        sa_old = Signal(signed(self._sum_w["a"]), reset_less=True)
        m.d.sync += [u_s.eq(old(vs_r.data) + ((cum - old(cum_r.data)) << self._s_shift)),
                     sa_old.eq(old(sa_r.data))]
        # t·c is stored as soon as the old value has been read.
        m.d.comb += [cum_w.addr.eq(c1.index), cum_w.data.eq(cum), cum_w.en.eq(c1.valid)]
        _, s_code, s_emit, u_s, (s_up, s_down) = self._mt(m, u_s, self._s_lam, "mt_s")
        c3 = Signal(pm, name="count_3")
        sa_old_3 = Signal(signed(self._sum_w["a"]), reset_less=True)
        m.d.sync += [c3.eq(c2_), sa_old_3.eq(sa_old)]
        m.d.comb += [
            vs_w.addr.eq(c3.index), vs_w.data.eq(u_s - s_emit), vs_w.en.eq(c3.valid),
            # SA + A from the level's one-hot (not through the log code): one adder each way.
            sa_w.addr.eq(c3.index),
            sa_w.data.eq(Mux(s_up.any(), sa_old_3 + (s_up << self._ss[0]),
                             sa_old_3 - (s_down << self._ss[1]))),
            sa_w.en.eq(c3.valid),
            prob_w.addr.eq(Cat(c3.j[:row_bits], c3.i[0])),
            prob_w.data.code.eq(s_code), prob_w.data.sa_old.eq(sa_old_3), prob_w.en.eq(c3.valid),
        ]
        row_filled = Signal(2)
        with m.If(c3.valid & (c3.j == n - 1)):
            m.d.comb += row_filled.bit_select(c3.i[0], 1).eq(1)

        # -- output MAC: P2[r][l] += Σ_j A_t[r][j]·SV_t[j][l] + SA_(t-1)[r][j]·V_t[j][l] -----
        row = Signal(range(max(2, n)))
        o_chunk = Signal(range(max(2, ch)))
        o_j = Signal(range(max(2, n)))
        o_busy = Signal()
        pending = Signal()   # the output beat register is claimed by a row not yet sent
        out_full = Signal()  # the output beat register holds a whole row
        released = Signal(2)
        start = Signal()
        m.d.comb += start.eq(running & ~o_busy & complete.bit_select(row[0], 1) & ~pending)
        with m.If(start):
            m.d.sync += o_busy.eq(1)
        otag = data.StructLayout({"valid": 1, "row": range(max(2, n)), "j": range(max(2, n)),
                                  "chunk": range(max(2, ch))})
        o1, o2, o3 = (Signal(otag, name=f"out_mac_{s}") for s in (1, 2, 3))
        m.d.sync += [o1.valid.eq(o_busy), o1.row.eq(row), o1.j.eq(o_j), o1.chunk.eq(o_chunk),
                     o2.eq(o1), o3.eq(o2)]
        m.d.comb += prob_r.addr.eq(Cat(o_j[:row_bits], row[0]))
        for b in range(lanes):
            for ports in (sv, vc):
                m.d.comb += ports[b][1].addr.eq(o_j * ch + o_chunk)
        with m.If(o_busy):
            m.d.sync += o_j.eq(o_j + 1)
            with m.If(o_j == n - 1):
                m.d.sync += [o_j.eq(0), o_chunk.eq(o_chunk + 1)]
                with m.If(o_chunk == ch - 1):
                    m.d.sync += [o_chunk.eq(0), o_busy.eq(0),
                                 row.eq(Mux(row == n - 1, 0, row + 1))]
                    m.d.comb += released.bit_select(row[0], 1).eq(1)
        m.d.sync += [owned.eq((owned | Mux(take, C(1, 2) << count_i[0], 0)) & ~released),
                     complete.eq((complete | row_filled) & ~released)]
        # Stage 1: SV_t = SV_(t-1) + V_t, written back on the last row.
        sv_new = [Signal(signed(self._sum_w["v"]), name=f"sv_new_{b}", reset_less=True)
                  for b in range(lanes)]
        v_code = [Signal(log, name=f"v_code_{b}", reset_less=True) for b in range(lanes)]
        a_code = Signal(log, reset_less=True)
        a_sa = Signal(signed(self._sum_w["a"]), reset_less=True)
        m.d.sync += [a_code.eq(prob_r.data.code), a_sa.eq(prob_r.data.sa_old)]
        for b in range(lanes):
            v_now = vc[b][1].data
            sv_sum = old(sv[b][1].data) + self._decode(v_now, self._sv)
            m.d.comb += [sv[b][0].addr.eq(o1.j * ch + o1.chunk), sv[b][0].data.eq(sv_sum),
                         sv[b][0].en.eq(o1.valid & (o1.row == n - 1))]
            m.d.sync += [sv_new[b].eq(sv_sum), v_code[b].eq(v_now)]
        # Stage 2: the shift-adds; stage 3: accumulate onto P2_(t-1).
        o_terms = [Signal(signed(self._p2_w + 1), name=f"o_terms_{b}", reset_less=True)
                   for b in range(lanes)]
        o_acc = [Signal(signed(self._p2_w + 2), name=f"o_acc_{b}", reset_less=True)
                 for b in range(lanes)]
        o_done = Signal()
        m.d.comb += o_done.eq(o3.valid & (o3.j == n - 1))
        out_lanes = []
        for b in range(lanes):
            m.d.sync += o_terms[b].eq(self._times_code(sv_new[b], a_code, self._ss)
                                      + self._times_code(a_sa, v_code[b], self._sv))
            p2_r = p2[b][1]
            m.d.comb += p2_r.addr.eq(o2.row * ch + o2.chunk)
            p2_sum = Signal(signed(self._p2_w + 2), name=f"p2_new_{b}")
            m.d.comb += p2_sum.eq(Mux(o3.j == 0, old(p2_r.data), o_acc[b]) + o_terms[b])
            m.d.sync += o_acc[b].eq(p2_sum)
            m.d.comb += [p2[b][0].addr.eq(o3.row * ch + o3.chunk), p2[b][0].data.eq(p2_sum),
                         p2[b][0].en.eq(o_done)]
            out_lanes.append(p2_sum)

        # -- output lanes: C2 = floor(P2 / t), MT at the output, into the beat register -----
        lane_tag = data.StructLayout({"row": range(max(2, n)), "chunk": range(max(2, ch))})
        # One register for the beat (not two banks): on iCE40 each of its bits takes a logic
        # cell of its own, and the output MAC is rarely the bottleneck.
        beat_out = [Signal(signed(cw), name=f"beat_{l}", reset_less=True) for l in range(d)]
        written = Signal()
        for b in range(lanes):
            # One value per lane every n cycles (one chunk of the output MAC).
            div = _Divider(self._p2_w, self._t_w + 1, lane_tag, interval=interval_o,
                           quotient_bits=bits_o)
            m.submodules[f"div_o{b}"] = div
            # P2 is registered first: the accumulator's carry chain does not run into the
            # divider.
            p2_final = Signal(signed(self._p2_w), name=f"p2_final_{b}", reset_less=True)
            p2_tag = Signal(lane_tag, name=f"p2_tag_{b}", reset_less=True)
            p2_valid = Signal(name=f"p2_valid_{b}")
            m.d.sync += [p2_final.eq(out_lanes[b]), p2_valid.eq(o_done), p2_tag.row.eq(o3.row),
                         p2_tag.chunk.eq(o3.chunk)]
            m.d.comb += [div.divisor.eq(t), div.i_valid.eq(p2_valid), div.dividend.eq(p2_final),
                         div.i_tag.eq(p2_tag)]
            (c2_w, c2_r), (vo_w, vo_r) = c2[b], vo[b]
            q2 = Signal(signed(self._c2_w), name=f"c2_{b}", reset_less=True)
            l1 = Signal(lane_tag, name=f"lane1_{b}", reset_less=True)
            l1_valid = Signal(name=f"lane1_valid_{b}")
            m.d.sync += [q2.eq(div.quotient), l1.eq(div.o_tag), l1_valid.eq(div.o_valid)]
            for port in (c2_r, vo_r):
                m.d.comb += port.addr.eq(div.o_tag.row * ch + div.o_tag.chunk)
            # C2_t is stored as soon as C2_(t-1) has been read.
            m.d.comb += [c2_w.addr.eq(l1.row * ch + l1.chunk), c2_w.data.eq(q2),
                         c2_w.en.eq(l1_valid)]
            u_o = Signal(signed(self._vo_w), name=f"u_out_{b}", reset_less=True)
            l2 = Signal(lane_tag, name=f"lane2_{b}", reset_less=True)
            l2_valid = Signal(name=f"lane2_valid_{b}")
            m.d.sync += [u_o.eq(old(vo_r.data) + ((q2 - old(c2_r.data)) << self._o_shift)),
                         l2.eq(l1), l2_valid.eq(l1_valid)]
            code, _, emit, u_o, _ = self._mt(m, u_o, self._o_lam, f"mt_out_{b}")
            l3 = Signal(lane_tag, name=f"lane3_{b}", reset_less=True)
            l3_valid = Signal(name=f"lane3_valid_{b}")
            m.d.sync += [l3.eq(l2), l3_valid.eq(l2_valid)]
            m.d.comb += [vo_w.addr.eq(l3.row * ch + l3.chunk), vo_w.data.eq(u_o - emit),
                         vo_w.en.eq(l3_valid)]
            with m.If(l3_valid):
                for k in range(ch):
                    if element(b, k) < d:
                        with m.If(l3.chunk == k):
                            m.d.sync += beat_out[element(b, k)].eq(code)
            if b == 0:
                m.d.comb += written.eq(l3_valid & (l3.chunk == ch - 1))

        # -- output beats -------------------------------------------------------------------
        out_row = Signal(range(max(2, n)))
        sent = Signal()
        m.d.comb += [self.o.valid.eq(out_full), self.o.payload.last.eq(out_row == n - 1),
                     sent.eq(self.o.valid & self.o.ready)]
        m.d.comb += [self.o.payload.out[l].eq(beat_out[l]) for l in range(d)]
        with m.If(sent):
            m.d.sync += out_row.eq(out_row + 1)
            with m.If(out_row == n - 1):
                m.d.sync += [out_row.eq(0), running.eq(0)]
        m.d.sync += [out_full.eq((out_full | written) & ~sent),
                     pending.eq((pending | start) & ~sent)]
        return m
