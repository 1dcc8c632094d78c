"""The integer spiking attention head: what the converted model runs in integer mode and what
the attention-datapath core implements bit for bit.

Per time step t the head receives MT codes (D4: 0 or ±2**k, k < levels) of Q, K and V, each of
shape ``(tokens, head_dim)``. A code ``c`` of a site with exponents ``(ep, en)`` carries the
value ``c * 2**ep`` if ``c > 0`` and ``c * 2**en`` if ``c < 0`` (the site's λp and λn, rounded
to powers of two, so every spike-driven product is a shift). Inside the head, all values are
integers in units of ``2**min(ep, en)`` of their site:

1. **Scores, matmul-ECM (D8).** ``SQ_t``, ``SK_t`` running sums; ``C_t = floor(SQ_t SK_t^T / t)``.
2. **Softmax-ECM with the spiking softmax (D7).** The softmax runs on the running mean of the
   scores, ``C_t / t``, scaled by ``score_scale`` (``head_dim**-0.5`` for standard attention) and
   the site units into the SI-exp input format. That is one folded constant ``M / 2**shift``:
   ``X = round_half_up(C_t * M / (t * 2**shift))``. Then either the row maximum is subtracted
   (``softmax_input="max"``, into the table's range [lo, 0]), or ``X`` is mapped through a
   sigmoid (``"sigmoid"``, the paper's choice; evaluated in float64 and quantised: a look-up
   table in hardware). SI-exp and SI-norm give counts ``c_t`` out of ``N``; the cumulative
   probability is ``t * c_t`` (exact), emitted as its cumulative difference.
3. **MT neuron at the probabilities** (site ``s``; membrane in units of ``1/N``).
4. **Output, matmul-ECM** of the probability codes and V: ``floor(SA_t SV_t / t)``.
5. **MT neuron at the output** (site ``out``): the head emits its codes.

Every step is exact integer arithmetic except the folded constant ``M`` (``scale_bits``
significant bits) and, with ``softmax="exact"`` or the sigmoid mapping, a float64 function that
hardware would tabulate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .ecm import cumulative_difference, ecm_matmul_int, steps_like
from .fixed import INT64_MAX, check_int, max_magnitude
from .mt_neuron import mt_neuron
from .si_exp import SIExpTable, check_exp_table
from .si_norm import check_power_of_two_N, check_rounding
from .softmax import spiking_softmax

__all__ = ["HeadConfig", "HeadResult", "attention_head", "decode_codes", "check_codes",
           "check_table_input", "mt_site", "matmul_sops", "random_codes"]

SOFTMAXES = ("exact", "spiking")
SOFTMAX_INPUTS = ("max", "sigmoid")


def check_table_input(table: SIExpTable, softmax_input: str):
    """Refuse an SI-exp table whose range does not fit the softmax input mapping (D7)."""
    lo, hi = table.range
    if softmax_input == "max" and table.hi != 0:
        raise ValueError(f"softmax_input='max' needs a table whose range ends at 0 (scores "
                         f"minus the row maximum); this table covers {table.range}")
    if softmax_input == "sigmoid" and not (lo <= 0 and hi >= 1):
        raise ValueError(f"softmax_input='sigmoid' needs a table whose range covers [0, 1] (the "
                         f"sigmoid's outputs); this table covers {table.range}")


def _check_exponents(name: str, value) -> tuple[int, int]:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(e, int) and not isinstance(e, bool) for e in value)):
        raise ValueError(f"{name} must be a pair of integers (ep, en), not {value!r}")
    for e in value:
        check_int(name, e, minimum=-40, maximum=40)
    return value


@dataclass(frozen=True)
class HeadConfig:
    """Parameters a hardware head needs (all integers except ``score_scale``).

    ``*_exponents`` are ``(ep, en)``: λp = 2**ep, λn = 2**en of the MT site (q, k and v: the
    meaning of the incoming codes; s and out: the head's own MT neurons). ``levels`` is the MT
    level count of every site. ``table`` is the SI-exp table (its K and formats), ``N`` the SI-norm
    input spike count (a power of two)."""

    tokens: int
    head_dim: int
    time_steps: int
    levels: int
    q_exponents: tuple[int, int]
    k_exponents: tuple[int, int]
    v_exponents: tuple[int, int]
    s_exponents: tuple[int, int]
    out_exponents: tuple[int, int]
    table: SIExpTable
    N: int = 256
    score_scale: float = 1.0
    softmax: str = "spiking"
    softmax_input: str = "max"
    rounding: str = "round"
    scale_bits: int = 16

    def __post_init__(self):
        check_int("tokens", self.tokens, minimum=1, maximum=4096)
        check_int("head_dim", self.head_dim, minimum=1, maximum=4096)
        check_int("time_steps", self.time_steps, minimum=1, maximum=1 << 16)
        check_int("levels", self.levels, minimum=1, maximum=16)
        check_power_of_two_N(self.N)
        check_rounding(self.rounding)
        check_int("scale_bits", self.scale_bits, minimum=2, maximum=30)
        for name in ("q_exponents", "k_exponents", "v_exponents", "s_exponents",
                     "out_exponents"):
            ep, en = _check_exponents(name, getattr(self, name))
            # Codes are decoded in units of the smaller λ (decode_codes).
            if self.levels - 1 + abs(ep - en) > 62:
                raise ValueError(f"{name} = {(ep, en)} with levels = {self.levels}: a code "
                                 f"reaches 2**{self.levels - 1 + abs(ep - en)} in units of "
                                 f"the smaller λ, beyond int64 (|ep - en| + levels - 1 must "
                                 f"be at most 62)")
        check_exp_table(self.table)
        if self.softmax not in SOFTMAXES:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAXES)}, not {self.softmax!r}")
        if self.softmax_input not in SOFTMAX_INPUTS:
            raise ValueError(f"softmax_input must be one of {', '.join(SOFTMAX_INPUTS)}, "
                             f"not {self.softmax_input!r}")
        if not (isinstance(self.score_scale, (int, float)) and math.isfinite(self.score_scale)
                and self.score_scale > 0):
            raise ValueError(f"score_scale must be a positive finite number, not "
                             f"{self.score_scale!r}")
        check_table_input(self.table, self.softmax_input)
        shift = self.score_constant[1]
        if (2 * self.time_steps) << shift > INT64_MAX:
            raise ValueError(f"score_scale * 2**(score_unit + input frac) = {self.score_alpha:g} "
                             f"is too small: the softmax input divides by t * 2**{shift}, "
                             f"beyond int64 (raise q_exponents, k_exponents or score_scale)")

    @property
    def q(self) -> int:
        """log2 N: probabilities are integers in units of 2**-q."""
        return self.N.bit_length() - 1

    @property
    def score_unit(self) -> int:
        """Scores ``SQ SK^T`` are integers in units of 2**score_unit."""
        return min(self.q_exponents) + min(self.k_exponents)

    @property
    def score_constant(self) -> tuple[int, int]:
        """``(M, shift)``: the softmax input is ``round(C_t * M / (t * 2**shift))`` in SI-exp
        input LSBs. ``M`` carries ``scale_bits`` significant bits of
        ``score_scale * 2**(score_unit + input frac)``."""
        shift = max(0, self.scale_bits - 1 - math.floor(math.log2(self.score_alpha)))
        return round(self.score_alpha * 2.0 ** shift), shift

    @property
    def score_alpha(self) -> float:
        """Softmax input LSBs per unit of the mean score ``C_t / t``."""
        return self.score_scale * 2.0 ** (self.score_unit + self.table.input_format.frac)


class HeadResult(NamedTuple):
    out: torch.Tensor  #: output MT codes (T, ..., tokens, head_dim)
    counts: torch.Tensor  #: spiking-softmax counts c_t out of N (T, ..., tokens, tokens)
    s_codes: torch.Tensor  #: probability-site MT codes (T, ..., tokens, tokens)
    sops: dict  #: synaptic operations per step (ECMT count), keys "scores", "output"


def check_codes(name: str, codes, levels: int) -> torch.Tensor:
    """Return ``codes`` as int64 if every element is 0 or ±2**k with k < levels."""
    codes = torch.as_tensor(codes)
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of MT codes, not {codes.dtype}")
    codes = codes.to(torch.int64)
    mag = codes.abs()  # negative only for −2**63, which is no code
    bad = (mag != 0) & (((mag & (mag - 1)) != 0) | (mag >= (1 << levels)) | (mag < 0))
    if bad.any():
        raise ValueError(f"{name} holds {int(codes[bad][0])}, which is not an MT code: codes are "
                         f"0 or ±2**k with k < levels = {levels}")
    return codes


def random_codes(shape, levels: int, density: float, generator: torch.Generator) -> torch.Tensor:
    """Random MT codes (int64, ``shape``): each nonzero with probability ``density`` (0 to 1),
    then ``±2**k`` with a uniform sign and a uniform ``k < levels``."""
    fires = torch.rand(shape, generator=generator) < density
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1, 1)
    k = torch.randint(0, levels, shape, generator=generator)
    return torch.where(fires, sign * (1 << k), 0)


def decode_codes(codes: torch.Tensor, exponents: tuple[int, int]) -> torch.Tensor:
    """Values of MT codes in units of ``2**min(exponents)`` (a shift per sign)."""
    ep, en = exponents
    u = min(ep, en)
    return torch.where(codes > 0, codes * (1 << (ep - u)), codes * (1 << (en - u)))


def mt_site(x: torch.Tensor, in_unit: int, exponents: tuple[int, int], levels: int) -> torch.Tensor:
    """MT codes of integer input ``x`` (T, ...) in units of ``2**in_unit`` for a site with
    λ = 2**exponents. The input is shifted left when needed so that λ/2 is a whole LSB."""
    shift = max(0, 1 - (min(exponents) - in_unit))
    lp, ln = (1 << (e - in_unit + shift) for e in exponents)
    return mt_neuron(x << shift, lp, ln, levels).codes


def matmul_sops(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ECMT's synaptic operations per step of a matmul-ECM of spike values ``a`` (T, ..., n, m)
    and ``b`` (T, ..., m, p), summed over everything but time: its ``SOPMonitor`` on
    ``AtNeuron``, ``A_t B_t + A_t SB_t + SA_t B_t`` with each product counted over the pairs
    whose two operands are both nonzero, and SA_t, SB_t the running sums *including* step t
    (the monitor reads them after the update; at t = 1 that counts A_1 B_1 three times, as
    ECMT does). The running sums are of values, so pass decoded spikes, not MT codes."""
    def nonzero(x):
        return (x != 0).to(torch.float64)
    na, nb = nonzero(a), nonzero(b)
    sa, sb = nonzero(torch.cumsum(a, dim=0)), nonzero(torch.cumsum(b, dim=0))
    per = (na @ nb + na @ sb + sa @ nb).sum((-2, -1))
    return per.reshape(per.shape[0], -1).sum(1)


def attention_head(q_codes, k_codes, v_codes, config: HeadConfig) -> HeadResult:
    """Run the integer head for all T steps at once; vectorised over any dims between time and
    ``(tokens, head_dim)``."""
    c = config
    q = check_codes("q_codes", q_codes, c.levels)
    k = check_codes("k_codes", k_codes, c.levels)
    v = check_codes("v_codes", v_codes, c.levels)
    expect = (c.tokens, c.head_dim)
    for name, x in (("q_codes", q), ("k_codes", k), ("v_codes", v)):
        if x.dim() < 3 or tuple(x.shape[-2:]) != expect:
            raise ValueError(f"{name} must have shape (T, ..., tokens={c.tokens}, "
                             f"head_dim={c.head_dim}), not {tuple(x.shape)}")
        if x.shape != q.shape:
            raise ValueError(f"q_codes, k_codes and v_codes must have one shape; {name} has "
                             f"{tuple(x.shape)}, q_codes {tuple(q.shape)}")
    if q.shape[0] > c.time_steps:
        raise ValueError(f"the codes cover {q.shape[0]} steps; time_steps = {c.time_steps}")

    qv = decode_codes(q, c.q_exponents)
    kv = decode_codes(k, c.k_exponents)
    vv = decode_codes(v, c.v_exponents)

    # 1. Scores: cumulative C_t = floor(SQ SK^T / t); the softmax sees their running mean C_t/t.
    C = torch.cumsum(ecm_matmul_int(qv, kv.transpose(-2, -1)), dim=0)
    t = steps_like(C, torch.int64)
    fmt = c.table.input_format
    M, shift = c.score_constant
    if 2 * max_magnitude(C) * M + 2 * (C.shape[0] << shift) > INT64_MAX:
        raise ValueError(f"scores up to {max_magnitude(C)} times the folded scale M = {M} overflow "
                         f"int64: the q and k exponents are too large for these codes")
    den = t << shift
    X = torch.div(2 * C * M + den, 2 * den, rounding_mode="floor")

    # 2. Softmax on the mean; cumulative probability t * c_t in units of 1/N.
    if c.softmax_input == "sigmoid":
        X = fmt.quantise(torch.sigmoid(X.to(torch.float64) * fmt.lsb))
    else:
        X = (X - X.max(dim=-1, keepdim=True).values).clamp(min=fmt.min_int)
    if c.softmax == "spiking":
        counts = spiking_softmax(X, c.table, c.N, rounding=c.rounding).counts
    else:
        p = torch.softmax(X.to(torch.float64) * fmt.lsb, dim=-1)
        counts = torch.floor(p * c.N + 0.5).to(torch.int64)
    s_in = cumulative_difference(t * counts)

    # 3.-5. MT at the probabilities, matmul-ECM with V, MT at the output.
    s_codes = mt_site(s_in, -c.q, c.s_exponents, c.levels)
    sv = decode_codes(s_codes, c.s_exponents)
    o = ecm_matmul_int(sv, vv)
    out = mt_site(o, min(c.s_exponents) + min(c.v_exponents), c.out_exponents, c.levels)
    sops = {"scores": matmul_sops(qv, kv.transpose(-2, -1)), "output": matmul_sops(sv, vv)}
    return HeadResult(out, counts, s_codes, sops)
