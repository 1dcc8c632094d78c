"""ANN → SNN conversion of transformers: ECMT's multi-threshold neurons and expectation
compensation, with the attention softmax exact (ECMT) or spiking (SIT).

``convert(model, calibration)`` returns a :class:`SpikingModel` that runs ``T`` steps and returns
the cumulative output after each step. What it replaces (the sites of ECMT, §1.4 of
``shared/reference/algorithms.md``):

* every ``nn.Linear`` gets an MT neuron at its input (except the ones named in ``analog``, which
  see real values and multiply, as ECMT's patch embedding and classifier head do);
* norms (``nn.LayerNorm``, ``RMSNorm``, ``GroupNorm``, BatchNorm with running statistics) and
  elementwise activations (``torch.nn``'s, Hugging Face ``transformers.activations``) become
  unary ECM operators (D8) on the running mean;
* attention (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and Hugging Face
  BERT-style ``*SelfAttention`` with ``query``/``key``/``value``) becomes: MT at q, k, v;
  matmul-ECM of Q·Kᵀ; softmax-ECM, exact or the spiking softmax (max-subtracted or sigmoid
  mapped, D7); MT at the probabilities (site ``s``); matmul-ECM with V; MT at the output;
* modules that are linear per step (dropout, identity, flatten; in real mode also embeddings,
  convolutions and average pooling) and modules with a ``forward_integer(x, act_frac)`` method
  run unchanged on every step; any other module without children is refused, as are attention
  modules of other forms, decoders and subclasses overriding a forward this module rebuilds.
  Functions called inside a ``forward`` (``F.relu(x)``, ``x * x``) are not seen: use modules.

Conventions: the model's inputs are repeated for the T steps along the batch dimension
(direct coding: the same input every step), so a batch of B becomes T·B rows and stateful
operators view them as ``(T, B, ...)``. ``batch_first=False`` layouts of ``nn.MultiheadAttention``
and ``nn.TransformerEncoderLayer`` are handled inside them; everywhere else tensors must keep
the batch dimension first (a converted module that finds another size there says so).

λ calibration (ECMT): per batch, λp is the ``percentiles[0]`` quantile of the site's activations
and λn minus the ``percentiles[1]`` quantile; both are averaged over the calibration batches.
Overrides per site kind (:data:`SITE_KINDS`) or full site name (``lambdas``; any other key is an
error); ECMT's default fixes the softmax site ``s`` at 0.0125, and a ``lambdas`` dict replaces
the default one. A λn that calibrates to ≤ 0 (a site without negative values) takes λp.

Integer mode (``integer=True``) runs what the FPGA would: real tensors between operators are
integers with ``act_frac`` fractional bits; weights have ``weight_frac``; each MT site's λp, λn
are rounded down to powers of two (so a spike is a shift); Linear layers on spikes use only
shifts and adds on integers, rounded half up into the activation format; the attention heads
run :func:`golden.attention.attention_head` (replaceable: ``SpikingModel.head_function``, e.g. by
a Verilator model of the hardware head). LayerNorm and GELU are evaluated in float64 on the
exact integer running mean and quantised (there is no fixed-point core for them yet).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import (SOFTMAX_INPUTS, SOFTMAXES, HeadConfig, attention_head,
                        check_table_input, decode_codes, matmul_sops, mt_site)
from .ecm import ecm_matmul, ecm_unary, ecm_unary_int, round_shift
from .fixed import Format, check_int
from .mt_neuron import mt_decode, mt_neuron_float
from .si_exp import SIExpTable, check_exp_table, shipped_table
from .si_norm import check_power_of_two_N, check_rounding
from .softmax import spiking_softmax_float

__all__ = [
    "ConversionConfig", "MAX_TIME_STEPS", "SITE_KINDS", "SpikingModel", "convert", "SiteStats",
]

MAX_TIME_STEPS = 1 << 16  #: the largest T a converted model runs
#: An additive attention-mask entry at or below this drops its key: PyTorch's −inf, Hugging
#: Face's dtype minimum and its older −10000 all do; the ANN gives such a key weight 0.
MASKED = -1e4


@dataclass(frozen=True)
class ConversionConfig:
    """Every choice of the conversion; the defaults are the papers' (ECMT, SIT)."""

    levels: int = 8  #: MT levels per sign at every site (ECMT --*_num)
    percentiles: tuple[float, float] = (0.99, 0.01)  #: λp, λn calibration quantiles
    lambdas: dict = field(default_factory=lambda: {"s": (0.0125, 0.0125)})  #: fixed λ by site
    softmax: str = "exact"  #: "exact" (ECMT) or "spiking" (SIT)
    softmax_input: str = "max"  #: softmax input (either softmax): "max" (row max) or "sigmoid"
    K: int | None = None  #: SI-exp steps: the table's K, else 12 (shipped table for the range)
    N: int = 256  #: SI-norm input spikes
    rounding: str = "round"  #: SI-norm rounding (D6)
    table: SIExpTable | None = None  #: explicit SI-exp table instead of the shipped one
    analog: tuple[str, ...] = ()  #: Linear module names whose inputs stay real-valued
    integer: bool = False  #: run on the fixed-point operators
    act_frac: int = 10  #: fractional bits of real-valued activations (integer mode)
    weight_frac: int = 10  #: fractional bits of weights and biases (integer mode)
    act_width: int = 32  #: width of real-valued activations; exceeding it is an error
    weight_width: int = 16  #: width of weights; a weight outside it is an error

    def __post_init__(self):
        check_int("levels", self.levels, minimum=1, maximum=16)
        lo_hi = self.percentiles
        if (len(lo_hi) != 2 or not all(0.0 < float(p) < 1.0 for p in lo_hi)
                or not lo_hi[1] < lo_hi[0]):
            raise ValueError(f"percentiles must be (upper, lower) with 0 < lower < upper < 1, "
                             f"not {self.percentiles!r}")
        if self.softmax not in SOFTMAXES:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAXES)}, not {self.softmax!r}")
        if self.softmax_input not in SOFTMAX_INPUTS:
            raise ValueError(f"softmax_input must be one of {', '.join(SOFTMAX_INPUTS)}, "
                             f"not {self.softmax_input!r}")
        check_rounding(self.rounding)
        if self.table is not None:
            check_exp_table(self.table)
            check_table_input(self.table, self.softmax_input)
            if self.K is None:
                object.__setattr__(self, "K", self.table.K)
            elif self.K != self.table.K:
                raise ValueError(f"K = {self.K} differs from K = {self.table.K} of the given "
                                 f"table; leave K out to take the table's")
        elif self.K is None:
            object.__setattr__(self, "K", 12)
        check_int("K", self.K, minimum=1, maximum=64)
        check_power_of_two_N(self.N)
        if self.softmax == "spiking" or self.integer:  # the integer head takes a table
            self.si_exp_table  # a K without a shipped table fails here, not at the first step
        check_int("act_frac", self.act_frac, minimum=0, maximum=30)
        check_int("weight_frac", self.weight_frac, minimum=0, maximum=30)
        check_int("act_width", self.act_width, minimum=2, maximum=62)
        check_int("weight_width", self.weight_width, minimum=2, maximum=62)
        if not (isinstance(self.analog, (tuple, list))
                and all(isinstance(n, str) for n in self.analog)):
            raise TypeError(f"analog must be a tuple of Linear module names, not "
                            f"{self.analog!r}")
        if not isinstance(self.lambdas, dict):
            raise TypeError(f"lambdas must be a dict of site name or kind -> (λp, λn), not "
                            f"{self.lambdas!r}")
        for name, value in self.lambdas.items():
            if not (isinstance(value, (tuple, list)) and len(value) == 2
                    and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                            for v in value)):
                raise ValueError(f"lambdas[{name!r}] must be two positive numbers, not {value!r}")

    @property
    def si_exp_table(self) -> SIExpTable:
        if self.table is not None:
            return self.table
        lo, hi = (-8.0, 0.0) if self.softmax_input == "max" else (-1.0, 1.0)
        return shipped_table(self.K, lo, hi)

    @property
    def act_format(self) -> Format:
        return Format(self.act_width, self.act_frac)

    @property
    def weight_format(self) -> Format:
        return Format(self.weight_width, self.weight_frac)


class SiteStats:
    """Spike and operation counts accumulated over the samples run (for the energy models).
    Every run must have the same T and the same per-sample shapes (one input size): the
    figures are per sample and per step."""

    def __init__(self):
        self.samples = 0
        self.T: int | None = None
        self.sites: dict[str, dict] = {}  # name -> neurons (per sample), spikes[t] (all samples)
        self.layers: dict[str, dict] = {}  # name -> flops (per sample), sops[t], inputs, kind

    def snapshot(self):
        """The counts as they are, for :meth:`restore` when a run fails part-way."""
        return copy.deepcopy((self.samples, self.T, self.sites, self.layers))

    def restore(self, snapshot):
        self.samples, self.T, self.sites, self.layers = snapshot

    def start_run(self, T: int):
        if self.T is not None and T != self.T:
            raise ValueError(f"these statistics were recorded at T = {self.T}, not {T}; call "
                             f"record_stats() again for a new T")
        self.T = T

    @staticmethod
    def _same(name: str, what: str, recorded: int, now: int):
        if recorded != now:
            raise ValueError(f"{name}: {what} per sample is {now} in this run and {recorded} in "
                             f"the recorded ones; call record_stats() again for another input "
                             f"size")

    def site(self, name: str, codes: torch.Tensor, batch: int):
        neurons = codes[0].numel() // batch
        s = self.sites.setdefault(name, {"neurons": neurons, "spikes": 0})
        self._same(name, "the neuron count", s["neurons"], neurons)
        s["spikes"] = s["spikes"] + (codes != 0).reshape(codes.shape[0], -1).sum(1).double()

    def layer(self, name: str, kind: str, flops: int, sops, inputs: tuple[str, ...]):
        entry = self.layers.setdefault(name, {"kind": kind, "flops": flops, "inputs": inputs,
                                              "sops": 0})
        self._same(name, "the operation count", entry["flops"], flops)
        entry["sops"] = entry["sops"] + sops


class _Context:
    """State shared by the converted modules of one model."""

    def __init__(self, config: ConversionConfig):
        self.config = config
        self.mode = "calibrate"  # "calibrate" (runs the ANN, records activations), "snn"
        self.T = 1
        self.rows = 0  # T * batch while the SNN runs: the size of the batch dimension
        self.batch_dim = 0
        self.stats: SiteStats | None = None
        self.head_function: Callable = attention_head

    def time_major(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if x.dim() <= self.batch_dim or x.shape[self.batch_dim] != self.rows:
            raise ValueError(f"{name} got a tensor of shape {tuple(x.shape)} whose dimension "
                             f"{self.batch_dim} is not the batch of T·B = {self.rows} rows: "
                             f"converted modules need the batch dimension first")
        x = x.movedim(self.batch_dim, 0)
        return x.reshape(self.T, x.shape[0] // self.T, *x.shape[1:])

    def folded(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        return x.movedim(0, self.batch_dim)


def _exponent(lam: float) -> int:
    """λ rounded down to a power of two (integer mode): every spike becomes a shift, and the
    site gets finer rather than coarser (the top level halves at worst; 8 levels leave 128×)."""
    return math.floor(math.log2(lam))


class MTSite(nn.Module):
    """An MT neuron site: calibrated λp, λn; real or integer dynamics."""

    def __init__(self, name: str, kind: str, ctx: _Context):
        super().__init__()
        self.name, self.kind, self.ctx = name, kind, ctx
        self.lambdas: tuple[float, float] | None = None
        self._records: list[tuple[float, float]] = []

    def extra_repr(self) -> str:
        return f"{self.name}, lambdas={self.lambdas}"

    def record(self, x: torch.Tensor):
        flat = x.detach().reshape(-1).to(torch.float64)
        hi, lo = self.ctx.config.percentiles
        k_hi = max(1, min(flat.numel(), int(flat.numel() * hi)))
        k_lo = max(1, min(flat.numel(), int(flat.numel() * lo)))
        self._records.append((float(flat.kthvalue(k_hi).values),
                              -float(flat.kthvalue(k_lo).values)))

    def fixed_lambdas(self, fixed: dict) -> tuple[float, float] | None:
        """This site's entry of ``fixed`` (by name, else by kind), or None."""
        return fixed.get(self.name, fixed.get(self.kind))

    def finish_calibration(self, fixed: dict):
        given = self.fixed_lambdas(fixed)
        if given is not None:
            lp, ln = given
        else:
            if not self._records:
                raise RuntimeError(f"MT site {self.name} saw no calibration data")
            lp = sum(r[0] for r in self._records) / len(self._records)
            ln = sum(r[1] for r in self._records) / len(self._records)
            if lp <= 0:
                raise ValueError(f"MT site {self.name}: the {self.ctx.config.percentiles[0]} "
                                 f"quantile of its activations is {lp:g}; λp must be positive "
                                 f"(override it with lambdas={{{self.name!r}: (λp, λn)}})")
            if ln <= 0:
                ln = lp
        self.lambdas = (float(lp), float(ln))
        self._records.clear()

    @property
    def exponents(self) -> tuple[int, int]:
        return _exponent(self.lambdas[0]), _exponent(self.lambdas[1])

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Real mode: time-major real input → per-step spike values."""
        lp, ln = self.lambdas
        codes = mt_neuron_float(x, lp, ln, self.ctx.config.levels).codes
        self._count(codes)
        return mt_decode(codes, lp, ln).to(x.dtype)

    def codes(self, x: torch.Tensor, in_unit: int) -> torch.Tensor:
        """Integer mode: time-major integers in units of ``2**in_unit`` → MT codes."""
        codes = mt_site(x, in_unit, self.exponents, self.ctx.config.levels)
        self._count(codes)
        return codes

    def _count(self, codes: torch.Tensor):
        if self.ctx.stats is not None:
            self.ctx.stats.site(self.name, codes, codes.shape[1])


def _as_act(values_unit: int, values: torch.Tensor, act_frac: int, name: str) -> torch.Tensor:
    """Integers in units of 2**values_unit → activation integers (exact, or an error)."""
    if values_unit + act_frac < 0:
        raise ValueError(f"{name}: spike values in units of 2**{values_unit} are finer than the "
                         f"activation format (act_frac = {act_frac}); raise act_frac")
    return values << (values_unit + act_frac)


def _quantise_checked(name: str, x: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Round half up into ``fmt``; a value outside it is an error, never saturated."""
    q = torch.floor(x.detach().to(torch.float64) * 2.0 ** fmt.frac + 0.5).to(torch.int64)
    return fmt.check(f"{name} (quantised to {fmt})", q)


class SpikingLinear(nn.Module):
    """A Linear layer whose input is an MT site (``input="mt"``), real values (``"analog"``) or
    spike values produced upstream (``"spikes"``: an attention head's output)."""

    def __init__(self, linear: nn.Linear, name: str, ctx: _Context, input: str = "mt"):
        super().__init__()
        self.linear, self.name, self.ctx, self.input = linear, name, ctx, input
        kind = {"mt": "linear", "analog": "analog", "spikes": "spikes"}[input]
        self.kind = kind
        self.site = MTSite(f"{name}:in", ECMT_KIND.get(name.rsplit(".", 1)[-1], "linear"),
                           ctx) if input == "mt" else None
        #: the MT sites whose spikes this layer consumes (for the energy models)
        self.input_sites = (self.site.name,) if self.site is not None else ()
        self._int_params = None

    def _integer_params(self):
        if self._int_params is None:
            cfg = self.ctx.config
            w = _quantise_checked(f"{self.name}.weight", self.linear.weight, cfg.weight_format)
            b = (_quantise_checked(f"{self.name}.bias", self.linear.bias, cfg.act_format)
                 if self.linear.bias is not None else None)
            self._int_params = (w, b)
        return self._int_params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        if ctx.mode == "calibrate":
            if self.site is not None:
                self.site.record(x)
            return self.linear(x)
        xt = ctx.time_major(x, self.name)
        stats = ctx.stats
        if not ctx.config.integer:
            if self.site is not None:
                xt = self.site.values(xt)
            y = F.linear(xt, self.linear.weight, self.linear.bias)
        else:
            cfg = ctx.config
            w, b = self._integer_params()
            if self.site is not None:
                codes = self.site.codes(xt, -cfg.act_frac)
                unit = min(self.site.exponents)
                xt = decode_codes(codes, self.site.exponents)
                shift = cfg.weight_frac - unit - cfg.act_frac
            else:
                shift = cfg.weight_frac
            y = round_shift(xt @ w.T, shift)
            if b is not None:
                y = y + b
            cfg.act_format.check(f"output of {self.name}", y)
        if stats is not None:
            fan_out = self.linear.out_features
            per_sample = xt[0].numel() // xt.shape[1]
            sops = ((xt != 0).reshape(xt.shape[0], -1).sum(1).double() * fan_out
                    if self.input != "analog" else torch.zeros(xt.shape[0], dtype=torch.float64))
            stats.layer(self.name, self.kind, per_sample * fan_out, sops, self.input_sites)
        return ctx.folded(y)


# ECMT's names of the Linear input sites inside a transformer block.
ECMT_KIND = {"linear1": "fc1", "linear2": "fc2", "fc1": "fc1", "fc2": "fc2",
             "in_proj": "fc_qkv", "out_proj": "fc_out", "qkv": "fc_qkv", "proj": "fc_out"}
#: every MT site kind, the keys of ``ConversionConfig.lambdas`` besides full site names
SITE_KINDS = ("linear", *sorted(set(ECMT_KIND.values())), "q", "k", "v", "s")


class ECMUnary(nn.Module):
    """A unary operator under expectation compensation (real or integer mode)."""

    def __init__(self, fn: Callable, name: str, ctx: _Context):
        super().__init__()
        self.fn, self.name, self.ctx = fn, name, ctx
        if isinstance(fn, nn.Module):
            self.fn64 = copy.deepcopy(fn).double()
        else:
            self.fn64 = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx
        if isinstance(self.fn, _UNARY_ALONG_DIM) and self.fn.dim % x.dim() == ctx.batch_dim:
            raise NotImplementedError(
                f"{self.name} (nn.{type(self.fn).__name__}) works along dim={self.fn.dim}, the "
                f"batch dimension of its {x.dim()}-D input, which holds the T steps: give it a "
                f"dim of the sample")
        if ctx.mode == "calibrate":
            return self.fn(x)
        xt = ctx.time_major(x, self.name)

        def in_model_layout(fn):  # norms over channels (dim 1) must not see time as a dim
            return lambda mean: ctx.time_major(fn(ctx.folded(mean)), self.name)

        if ctx.config.integer:
            f = ctx.config.act_frac
            with torch.no_grad():
                y = ecm_unary_int(xt, in_model_layout(self.fn64), f, f)
            ctx.config.act_format.check(f"output of {self.name}", y)
        else:
            y = ecm_unary(xt, in_model_layout(self.fn))
        return ctx.folded(y)


class _Function(nn.Module):
    """A plain function as a module (TransformerEncoderLayer may hold ``F.gelu`` itself)."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class SpikingAttentionCore(nn.Module):
    """Heads of self-attention from per-step q, k, v (batch-first, already projected)."""

    def __init__(self, name: str, ctx: _Context, scale: float):
        super().__init__()
        self.name, self.ctx, self.scale = name, ctx, scale
        self.q = MTSite(f"{name}:q", "q", ctx)
        self.k = MTSite(f"{name}:k", "k", ctx)
        self.v = MTSite(f"{name}:v", "v", ctx)
        self.s = MTSite(f"{name}:s", "s", ctx)
        self.out = MTSite(f"{name}:out", "fc_out", ctx)

    def head_config(self, tokens: int, head_dim: int) -> HeadConfig:
        cfg = self.ctx.config
        return HeadConfig(tokens=tokens, head_dim=head_dim, time_steps=self.ctx.T,
                          levels=cfg.levels, q_exponents=self.q.exponents,
                          k_exponents=self.k.exponents, v_exponents=self.v.exponents,
                          s_exponents=self.s.exponents, out_exponents=self.out.exponents,
                          table=cfg.si_exp_table, N=cfg.N, score_scale=self.scale,
                          softmax="spiking" if cfg.softmax == "spiking" else "exact",
                          softmax_input=cfg.softmax_input, rounding=cfg.rounding)

    def _softmax(self, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention weights of the mean scores. With max subtraction the mask adds to the
        scores, as in the ANN; in the sigmoid setting it only drops keys (see :data:`MASKED`).
        The spiking softmax leaves dropped keys out of the row."""
        cfg = self.ctx.config
        keep = None if mask is None else (mask > MASKED).expand_as(scores)
        if cfg.softmax_input == "sigmoid":
            mapped = torch.sigmoid(scores)
        else:
            mapped = scores if mask is None else scores + mask
        if cfg.softmax == "exact":  # of the sigmoid-mapped scores too, as the integer head does
            if keep is not None:
                mapped = mapped.masked_fill(~keep, float("-inf"))
            return torch.softmax(mapped, dim=-1)
        table = cfg.si_exp_table
        if cfg.softmax_input == "max":
            kept = mapped if keep is None else mapped.masked_fill(~keep, float("-inf"))
            mapped = (mapped - kept.max(dim=-1, keepdim=True).values).clamp(
                min=table.input_format.min, max=0)
        return spiking_softmax_float(mapped, table, cfg.N, rounding=cfg.rounding,
                                     keep=keep).to(scores.dtype)

    def forward(self, q, k, v, mask=None):
        """q, k, v: (T·B, heads, tokens, head_dim) folded on dim 0; ``mask`` additive real
        (broadcast to the scores) or None. Returns the head outputs in the same layout: real
        spike values, or in integer mode spike values as activation integers."""
        ctx = self.ctx
        if ctx.mode == "calibrate":
            for site, x in ((self.q, q), (self.k, k), (self.v, v)):
                site.record(x)
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if mask is not None:
                scores = scores + mask
            p = torch.softmax(scores, dim=-1)  # the ANN
            self.s.record(p)
            o = p @ v
            self.out.record(o)
            return o
        saved, ctx.batch_dim = ctx.batch_dim, 0
        try:
            qt, kt, vt = (ctx.time_major(x, self.name) for x in (q, k, v))
            if mask is not None and mask.dim() == q.dim() and mask.shape[0] != 1:
                if mask.shape[0] != q.shape[0]:
                    raise ValueError(f"{self.name}: the attention mask has {mask.shape[0]} rows "
                                     f"and the SNN runs T·B = {q.shape[0]}; repeat per-sample "
                                     f"masks T times along the batch (mask.repeat(T, 1))")
                mask = ctx.time_major(mask, self.name)  # a per-sample mask, repeated T times
            stats = ctx.stats
            if not ctx.config.integer:
                qv, kv, vv = self.q.values(qt), self.k.values(kt), self.v.values(vt)
                scores = ecm_matmul(qv, kv.transpose(-2, -1)) * self.scale
                if mask is not None and ctx.config.softmax_input == "sigmoid":
                    _check_drop_mask(self.name, mask)
                p = ecm_unary(scores, lambda s: self._softmax(s, mask))
                sv = self.s.values(p)
                out = self.out.values(ecm_matmul(sv, vv))
                sops = {"scores": matmul_sops(qv, kv.transpose(-2, -1)),
                        "output": matmul_sops(sv, vv)}
            else:
                if mask is not None:
                    raise NotImplementedError(f"{self.name}: attention masks are supported in "
                                              f"real mode only")
                af = ctx.config.act_frac
                q_codes = self.q.codes(qt, -af)
                k_codes = self.k.codes(kt, -af)
                v_codes = self.v.codes(vt, -af)
                config = self.head_config(qt.shape[-2], qt.shape[-1])
                res = ctx.head_function(q_codes, k_codes, v_codes, config)
                sops = res.sops
                if stats is not None:
                    self.s._count(res.s_codes)
                    self.out._count(res.out)
                unit = min(config.out_exponents)
                out = _as_act(unit, decode_codes(res.out, config.out_exponents), af, self.name)
            if stats is not None:
                n, d = qt.shape[-2], qt.shape[-1]
                per_sample = qt[0].numel() // (qt.shape[1] * n * d)  # heads
                stats.layer(f"{self.name}:scores", "matmul", per_sample * n * n * d,
                            sops["scores"], (self.q.name, self.k.name))
                stats.layer(f"{self.name}:output", "matmul", per_sample * n * n * d,
                            sops["output"], (self.s.name, self.v.name))
            return ctx.folded(out)
        finally:
            ctx.batch_dim = saved


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    B, L, E = x.shape
    return x.reshape(B, L, heads, E // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, L, D = x.shape
    return x.transpose(1, 2).reshape(B, L, H * D)


def _check_drop_mask(name: str, mask: torch.Tensor):
    """The sigmoid setting maps scores into [0, 1] before the softmax, where an additive bias
    has no counterpart: its masks may only keep (0) or drop (≤ MASKED) keys."""
    bias = (mask != 0) & (mask > MASKED)
    if bias.any():
        raise NotImplementedError(
            f"{name}: the attention mask holds {float(mask[bias][0]):g}; with "
            f"softmax_input='sigmoid' a mask entry must be 0 (keep the key) or at most "
            f"{MASKED:g} (drop it): an additive bias cannot pass the sigmoid mapping")


def _additive_mask(attn_mask, key_padding_mask, dtype, batch: int, heads: int, L: int, S: int):
    mask = None
    if attn_mask is not None:
        m = attn_mask
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype).masked_fill(m, float("-inf"))
        mask = m.to(dtype).reshape(-1, heads, L, S) if m.dim() == 3 else m.to(dtype)
    if key_padding_mask is not None:
        m = key_padding_mask
        if m.shape[0] != batch:
            raise ValueError(f"key_padding_mask has {m.shape[0]} rows and the SNN runs T·B = "
                             f"{batch}; repeat it T times along the batch (mask.repeat(T, 1))")
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype).masked_fill(m, float("-inf"))
        m = m.to(dtype).reshape(batch, 1, 1, S)
        mask = m if mask is None else mask + m
    return mask


class SpikingMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (self-attention) with MT sites and ECM."""

    def __init__(self, mha: nn.MultiheadAttention, name: str, ctx: _Context):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise NotImplementedError(f"{name}: only MultiheadAttention with kdim = vdim = "
                                      f"embed_dim, no bias_k/bias_v and no add_zero_attn")
        self.heads, self.ctx, self.name = mha.num_heads, ctx, name
        self.batch_first = mha.batch_first  # torch's nn.TransformerEncoder reads it
        self.takes_batch_first = mha.batch_first  # the layout forward sees
        E = mha.embed_dim
        in_proj = nn.Linear(E, 3 * E, bias=mha.in_proj_bias is not None)
        in_proj.weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            in_proj.bias = mha.in_proj_bias
        self.in_proj = SpikingLinear(in_proj, f"{name}.in_proj", ctx)
        self.core = SpikingAttentionCore(name, ctx, (E // mha.num_heads) ** -0.5)
        self.out_proj = SpikingLinear(mha.out_proj, f"{name}.out_proj", ctx, input="spikes")
        self.out_proj.input_sites = (self.core.out.name,)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        if not (query is key and key is value):
            raise NotImplementedError(f"{self.name}: only self-attention (query is key is value) "
                                      f"is converted")
        if is_causal and attn_mask is None:
            raise NotImplementedError(f"{self.name}: is_causal needs an explicit attn_mask")
        x = query if self.takes_batch_first else query.transpose(0, 1)
        saved, self.ctx.batch_dim = self.ctx.batch_dim, 0
        try:
            B, L, E = x.shape
            q, k, v = self.in_proj(x).chunk(3, dim=-1)
            mask = _additive_mask(attn_mask, key_padding_mask, torch.float64 if x.dtype ==
                                  torch.int64 else x.dtype, B, self.heads, L, L)
            o = self.core(*(_split_heads(t, self.heads) for t in (q, k, v)), mask=mask)
            y = self.out_proj(_merge_heads(o))
        finally:
            self.ctx.batch_dim = saved
        return (y if self.takes_batch_first else y.transpose(0, 1)), None


class SpikingEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` rebuilt from its parameters (the fused fast path of the
    original would bypass the converted sub-modules); ``batch_first=False`` inputs are turned
    batch-first inside."""

    def __init__(self, layer: nn.TransformerEncoderLayer, name: str, ctx: _Context):
        super().__init__()
        self.norm_first, self.ctx = layer.norm_first, ctx
        self.batch_first = layer.self_attn.batch_first
        self.self_attn = SpikingMultiheadAttention(layer.self_attn, f"{name}.self_attn", ctx)
        self.self_attn.takes_batch_first = True  # this layer hands it batch-first tensors
        self.linear1 = SpikingLinear(layer.linear1, f"{name}.linear1", ctx)
        self.linear2 = SpikingLinear(layer.linear2, f"{name}.linear2", ctx)
        self.norm1 = ECMUnary(layer.norm1, f"{name}.norm1", ctx)
        self.norm2 = ECMUnary(layer.norm2, f"{name}.norm2", ctx)
        act = layer.activation
        self.activation = ECMUnary(act if isinstance(act, nn.Module) else _Function(act),
                                   f"{name}.activation", ctx)

    def _sa(self, x, mask, padding, is_causal):
        return self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding,
                              is_causal=is_causal)[0]

    def _ff(self, x):
        return self.linear2(self.activation(self.linear1(x)))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src if self.batch_first else src.transpose(0, 1)
        saved, self.ctx.batch_dim = self.ctx.batch_dim, 0
        try:
            if self.norm_first:
                x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
                x = x + self._ff(self.norm2(x))
            else:
                x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
                x = self.norm2(x + self._ff(x))
        finally:
            self.ctx.batch_dim = saved
        return x if self.batch_first else x.transpose(0, 1)


class SpikingBertSelfAttention(nn.Module):
    """Hugging Face BERT-style self-attention (``query``, ``key``, ``value`` Linears)."""

    def __init__(self, module: nn.Module, name: str, ctx: _Context):
        super().__init__()
        self.heads = module.num_attention_heads
        self.head_dim = module.attention_head_size
        self.ctx, self.name = ctx, name
        self.is_causal = bool(getattr(module, "is_causal", False))
        E = module.query.in_features
        linears = (module.query, module.key, module.value)
        has_bias = any(m.bias is not None for m in linears)
        fused = nn.Linear(E, 3 * self.heads * self.head_dim, bias=has_bias)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([m.weight for m in linears]))
            if has_bias:
                fused.bias.copy_(torch.cat([m.bias if m.bias is not None
                                            else torch.zeros(m.out_features) for m in linears]))
        self.qkv = SpikingLinear(fused, f"{name}.qkv", ctx)
        self.core = SpikingAttentionCore(name, ctx, getattr(module, "scaling",
                                                            self.head_dim ** -0.5))

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, **kwargs):
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            raise NotImplementedError(f"{self.name}: a filled key/value cache is not converted")
        if kwargs.get("encoder_hidden_states") is not None:
            raise NotImplementedError(f"{self.name}: only self-attention is converted")
        q, k, v = self.qkv(hidden_states).chunk(3, dim=-1)
        mask = attention_mask
        real = torch.float64 if q.dtype == torch.int64 else q.dtype  # masks are real-valued
        if mask is not None:
            if mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape, dtype=real).masked_fill(~mask, float("-inf"))
            mask = mask.to(real)
        causal = kwargs.get("is_causal")
        L = q.shape[-2]
        if mask is None and L > 1 and (self.is_causal if causal is None else causal):
            # what sdpa does for a decoder without a mask (Hugging Face passes mask None)
            mask = torch.full((L, L), float("-inf"), dtype=real).triu(1)
        o = self.core(*(_split_heads(t, self.heads) for t in (q, k, v)), mask=mask)
        return _merge_heads(o), None


def _is_bert_self_attention(m: nn.Module) -> bool:
    return ("SelfAttention" in type(m).__name__ and all(
        isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value")))


#: Per-sample functions converted by unary ECM: elementwise activations and norms.
_UNARY = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.GELU, nn.ReLU,
          nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.SiLU, nn.Mish,
          nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus,
          nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Hardshrink, nn.Softshrink, nn.Threshold)
#: Per-sample functions along ``dim``, which must not be the batch dimension.
_UNARY_ALONG_DIM = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.GLU)
#: Functions that are linear (affine) per step: run on the spike values of every step, their
#: outputs sum to the function of the summed input, as a Linear's do.
_PER_STEP = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
             nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
#: The same, but with no integer form here (real mode only).
_PER_STEP_REAL = (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.AvgPool1d, nn.AvgPool2d,
                  nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
#: Modules whose forward this converter does not rebuild.
_UNSUPPORTED = (nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)


def _is_unary(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.track_running_stats  # eval mode uses the running statistics: per sample
    if isinstance(m, _UNARY_ALONG_DIM):
        return m.dim not in (0, None)
    return isinstance(m, _UNARY) or type(m).__module__ == "transformers.activations"


def _own_forward(m: nn.Module, base: type) -> bool:
    """``m`` is a subclass of ``base`` with a forward of its own (which a rebuild would drop)."""
    return type(m).forward is not base.forward


def _refuse_unknown(full: str, child: nn.Module):
    """Refuse a module whose forward the converter would rebuild wrongly or not at all."""
    kind = type(child).__name__
    for base in (nn.TransformerEncoderLayer, nn.MultiheadAttention):
        if isinstance(child, base) and _own_forward(child, base):
            raise NotImplementedError(
                f"{full} ({kind}) overrides the forward of {base.__name__}; the converter "
                f"rebuilds that forward and would drop the override")
    if isinstance(child, _UNSUPPORTED):
        raise NotImplementedError(f"{full} is an nn.{kind}, which the converter does not "
                                  f"handle (encoders only)")


def _unconvertible(full: str, child: nn.Module, integer: bool) -> str | None:
    """Why ``child``, which no converted module replaces, cannot run as it is; or None."""
    kind = type(child).__name__
    if integer and isinstance(child, _PER_STEP_REAL):
        return (f"integer mode has no fixed-point form of {full} (nn.{kind}): convert in real "
                f"mode, or give the module a forward_integer(x, act_frac)")
    if isinstance(child, _UNARY_ALONG_DIM):
        return (f"{full} (nn.{kind}) works along dim={child.dim}, which may be the batch "
                f"dimension; give it dim ≥ 1 or a negative dim")
    if (next(child.children(), None) is None and not isinstance(child, (_PER_STEP,
                                                                        _PER_STEP_REAL))):
        return (f"{full} ({kind}) is not a module the converter knows: a Linear, an attention, "
                f"an elementwise activation or a norm (converted by ECM), or a module that is "
                f"linear per step (identity, dropout, flatten, embedding, convolution, average "
                f"pooling). Run on the spike values of each step it would compute a different "
                f"function. A module that is linear per step can declare it, and its integer "
                f"form, with a method forward_integer(x, act_frac)")
    return None


def _check_attention_converted(net: nn.Module):
    """Refuse attention modules of forms the converter does not know: converting only their
    Linears would leave their softmax and matmuls running on each step's spikes."""
    converted = (SpikingMultiheadAttention, SpikingBertSelfAttention, SpikingEncoderLayer,
                 SpikingAttentionCore)
    found = [(name, type(m).__name__) for name, m in net.named_modules()
             if "Attention" in type(m).__name__ and not isinstance(m, converted)
             and not any(isinstance(sub, converted) for sub in m.modules())]
    innermost = [f"{name} ({kind})" for name, kind in found
                 if not any(other.startswith(f"{name}.") for other, _ in found)]
    if innermost:
        raise NotImplementedError(
            f"{', '.join(innermost)}: attention in a form the converter does not know; it "
            f"converts nn.MultiheadAttention (self-attention), nn.TransformerEncoderLayer and "
            f"Hugging Face BERT-style *SelfAttention with query, key and value Linears")


def _check_finite(what: str, x: torch.Tensor) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{what} has NaN or infinite values")


class _IntegerAware(nn.Module):
    """A model module with its own integer form (``forward_integer(x, act_frac)``)."""

    def __init__(self, module: nn.Module, ctx: _Context):
        super().__init__()
        self.module, self.ctx = module, ctx

    def forward(self, x):
        if self.ctx.mode != "calibrate" and self.ctx.config.integer:
            return self.module.forward_integer(x, self.ctx.config.act_frac)
        return self.module(x)


class _Root(nn.Module):
    """Holds a model that is itself a converted module (its name becomes "0")."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.add_module("0", module)

    def forward(self, *args, **kwargs):
        return self._modules["0"](*args, **kwargs)


def _replace(module: nn.Module, ctx: _Context, prefix: str = "") -> list:
    """Replace convertible children in place; return the new modules."""
    cfg = ctx.config
    new = []
    spikes_in = {}  # id of the Linear after a BERT self-attention -> the head's output site
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        repl = None
        _refuse_unknown(full, child)
        if isinstance(child, nn.TransformerEncoderLayer):
            repl = SpikingEncoderLayer(child, full, ctx)
        elif isinstance(child, nn.MultiheadAttention):
            repl = SpikingMultiheadAttention(child, full, ctx)
        elif _is_bert_self_attention(child):
            repl = SpikingBertSelfAttention(child, full, ctx)
            sibling = getattr(module, "output", None)
            if sibling is not None and isinstance(getattr(sibling, "dense", None), nn.Linear):
                spikes_in[id(sibling.dense)] = repl.core.out.name
        elif isinstance(child, nn.Linear):
            kind = ("analog" if full in cfg.analog
                    else "spikes" if id(child) in spikes_in else "mt")
            repl = SpikingLinear(child, full, ctx, input=kind)
        elif _is_unary(child):
            repl = ECMUnary(child, full, ctx)
        elif hasattr(child, "forward_integer"):
            repl = _IntegerAware(child, ctx)
        if repl is not None:
            setattr(module, name, repl)
            new.append(repl)
        else:
            reason = _unconvertible(full, child, cfg.integer)
            if reason is not None:
                raise NotImplementedError(reason)
            new += _replace(child, ctx, f"{full}.")
    # the dense layer after a BERT self-attention may come before it in registration order
    if spikes_in:
        for name, child in list(module.named_modules()):
            if isinstance(child, SpikingLinear) and id(child.linear) in spikes_in:
                child.input, child.kind, child.site = "spikes", "spikes", None
                child.input_sites = (spikes_in[id(child.linear)],)
    return new


class SpikingModel(nn.Module):
    """A converted model. ``model(x, T=T)`` returns the cumulative outputs after each step,
    shape ``(T, *output shape)``: real values, or in integer mode int64 in units of
    ``2**-act_frac`` (:meth:`to_real` converts). Positional tensor inputs are repeated for the
    T steps; keyword arguments are passed unchanged, so repeat per-sample ones (masks) T times
    along the batch dimension yourself (``mask.repeat(T, 1)``).

    ``stats`` (a :class:`SiteStats`, when ``record_stats()`` was called) accumulates spikes and
    synaptic operations for the energy models; ``head_function`` computes the integer heads."""

    def __init__(self, model: nn.Module, ctx: _Context):
        super().__init__()
        self.model, self.ctx = model, ctx

    @property
    def config(self) -> ConversionConfig:
        return self.ctx.config

    @property
    def sites(self) -> dict[str, MTSite]:
        return {m.name: m for m in self.model.modules() if isinstance(m, MTSite)}

    @property
    def head_function(self) -> Callable:
        return self.ctx.head_function

    @head_function.setter
    def head_function(self, fn: Callable):
        self.ctx.head_function = fn

    def record_stats(self) -> SiteStats:
        self.ctx.stats = SiteStats()
        return self.ctx.stats

    def to_real(self, y: torch.Tensor) -> torch.Tensor:
        return self.config.act_format.to_float(y) if self.config.integer else y

    def _inputs(self, xs, T: int):
        out, repeated = [], {}  # one tensor passed twice stays one tensor (self-attention)
        for i, x in enumerate(xs):
            if not isinstance(x, torch.Tensor):
                out.append(x)
                continue
            if id(x) not in repeated:
                _check_finite(f"input {i}", x)
                q = x
                if self.config.integer and x.is_floating_point():
                    q = _quantise_checked(f"input {i}", x, self.config.act_format)
                repeated[id(x)] = q.repeat(T, *([1] * (q.dim() - 1)))
            out.append(repeated[id(x)])
        return out

    @torch.no_grad()
    def forward(self, *inputs, T: int, **kwargs) -> torch.Tensor:
        check_int("T", T, minimum=1, maximum=MAX_TIME_STEPS)
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        if not tensors:
            raise TypeError("pass the model's input tensors positionally: they are repeated for "
                            "the T steps (keyword arguments are passed unchanged)")
        batch = tensors[0].shape[0]
        if any(x.dim() == 0 or x.shape[0] != batch for x in tensors):
            raise ValueError(f"the input tensors must share their first (batch) dimension; "
                             f"their shapes are {[tuple(x.shape) for x in tensors]}")
        stats = self.ctx.stats
        before = stats.snapshot() if stats is not None else None
        try:  # a run that fails part-way leaves no counts behind
            if stats is not None:
                stats.start_run(T)
            self.ctx.mode, self.ctx.T, self.ctx.rows = "snn", T, T * batch
            try:
                y = self.model(*self._inputs(inputs, T), **kwargs)
            finally:
                self.ctx.mode, self.ctx.T, self.ctx.rows = "calibrate", 1, 0
            y = getattr(y, "last_hidden_state", y)
            if not isinstance(y, torch.Tensor):
                raise TypeError(f"the model returned {type(y).__name__}; SpikingModel needs a "
                                f"tensor or an output with last_hidden_state")
        except BaseException:
            if stats is not None:
                stats.restore(before)
            raise
        if stats is not None:
            stats.samples += batch
        return torch.cumsum(y.reshape(T, batch, *y.shape[1:]), dim=0)

    @torch.no_grad()
    def ann(self, *inputs, **kwargs):
        """The original ANN function (the converted model in calibration mode, nothing recorded
        from this call)."""
        records = {n: list(s._records) for n, s in self.sites.items()}
        y = self.model(*inputs, **kwargs)
        for n, s in self.sites.items():
            s._records[:] = records[n]
        return y


@torch.no_grad()
def convert(model: nn.Module, calibration, config: ConversionConfig | None = None, *,
            lambdas_from: SpikingModel | None = None, **options) -> SpikingModel:
    """Convert ``model`` (left untouched: a deep copy is converted).

    ``calibration`` is an iterable of input batches (each a tensor, a tuple of tensors or a dict
    of keyword arguments; NaN and infinities are refused); the λ of every site that
    ``config.lambdas`` does not fix is calibrated on them, or copied from ``lambdas_from`` (a
    converted model of the same architecture) when given.
    ``options`` override fields of ``config`` (a ``table`` brings its own K)."""
    if "table" in options and "K" not in options:
        options["K"] = None  # the table's
    config = replace(config or ConversionConfig(), **options)
    if isinstance(calibration, torch.Tensor):
        raise TypeError("calibration must be an iterable of input batches, not a tensor "
                        "(pass [x] to calibrate on the single batch x)")
    ctx = _Context(config)
    net = copy.deepcopy(model).eval()
    if isinstance(net, nn.MultiheadAttention):
        raise NotImplementedError("a bare nn.MultiheadAttention returns (output, weights); "
                                  "convert a module that calls it and returns its output")
    if isinstance(net, nn.TransformerEncoderLayer) and not net.self_attn.batch_first:
        raise NotImplementedError("the model's inputs must have the batch dimension first (they "
                                  "are repeated for the T steps along it); this "
                                  "nn.TransformerEncoderLayer has batch_first=False: wrap it "
                                  "in a module that transposes")
    _refuse_unknown("the model", net)
    if (next(net.children(), None) is None or isinstance(net, nn.TransformerEncoderLayer)
            or _is_bert_self_attention(net)):
        net = _Root(net)  # the converter replaces children: give the model itself a parent
    _replace(net, ctx)
    _check_attention_converted(net)
    spiking = SpikingModel(net, ctx)
    sites = spiking.sites
    linears = [m.name for m in net.modules() if isinstance(m, SpikingLinear)]
    for name in config.analog:
        if name not in linears:
            raise ValueError(f"analog lists {name!r}, which is not a Linear of this model; its "
                             f"Linears are {', '.join(linears) or 'none'}")
    for key in config.lambdas:
        if key not in SITE_KINDS and key not in sites:
            raise ValueError(f"lambdas key {key!r} is neither a site kind "
                             f"({', '.join(SITE_KINDS)}) nor an MT site of this model "
                             f"({', '.join(sites) or 'none'})")
    if lambdas_from is not None:
        source = lambdas_from.sites
        if set(source) != set(sites):
            raise ValueError("lambdas_from is a model with different MT sites")
        for name, site in sites.items():
            site.lambdas = tuple(map(float, site.fixed_lambdas(config.lambdas)
                                     or source[name].lambdas))
    else:
        seen = 0
        for batch in calibration:
            args, kwargs = ((), batch) if isinstance(batch, dict) else (
                (batch if isinstance(batch, (tuple, list)) else (batch,)), {})
            for key, x in (*enumerate(args), *kwargs.items()):
                if isinstance(x, torch.Tensor):
                    _check_finite(f"calibration batch {seen}, input {key!r},", x)
            net(*args, **kwargs)
            seen += 1
        if seen == 0:
            raise ValueError("calibration is empty: give at least one input batch")
        for site in sites.values():
            site.finish_calibration(config.lambdas)
    return spiking
