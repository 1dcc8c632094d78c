"""SI-exp: the few-spikes exponential neuron of SIT (numeric contract D5).

FS dynamics with per-step tables h, d, T over K steps::

    v = clamp(x, lo, hi); out = 0
    for t in 1..K:  z = v >= T[t];  out += d[t] * z;  v -= h[t] * z

Integer form: ``x``, ``v``, ``lo``, ``hi``, ``h`` and ``T`` are integers in units of the input
format's LSB; ``d`` and ``out`` are integers in units of the output format's LSB. The test is
non-strict (D2). A table records its formats, K, the range, and how it was made (seed, command,
measured error); trained tables ship in ``golden/tables/`` (see :func:`shipped_table`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import torch

from .fixed import Format, check_int

__all__ = ["SIExpTable", "SIExpResult", "si_exp", "si_exp_float", "shipped_table",
           "shipped_tables", "TABLE_DIR", "TARGETS", "evaluate_table", "check_exp_table"]

TABLE_DIR = Path(__file__).resolve().parent / "tables"

#: The functions a table can be trained for and measured against, by the name its
#: ``info["target"]`` records. SIT needs exp; the others are the FS neuron's other uses.
TARGETS = {"exp": torch.exp, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
           "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}


#: Largest magnitude of a table entry: 64 steps of them sum inside int64.
ENTRY_LIMIT = 1 << 56


class SIExpResult(NamedTuple):
    out: torch.Tensor  #: int64, output-format LSBs
    spikes: torch.Tensor  #: int64, spikes per input over the K steps


@dataclass(frozen=True, eq=False)
class SIExpTable:
    """Integer SI-exp tables with their formats. ``h``, ``T``, ``lo``, ``hi`` in input LSBs;
    ``d`` in output LSBs. ``info`` holds provenance (target, seed, command, measured error)."""

    input_format: Format
    output_format: Format
    lo: int
    hi: int
    h: tuple[int, ...]
    d: tuple[int, ...]
    T: tuple[int, ...]
    info: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Name of the function the table approximates: ``info["target"]``, exp if unrecorded."""
        return self.info.get("target", "exp")

    def target_function(self):
        """The function of :data:`TARGETS` named by :attr:`target`; ValueError if unknown."""
        if self.target not in TARGETS:
            raise ValueError(f"the table approximates {self.target!r}, not one of "
                             f"{', '.join(TARGETS)}; pass target= to measure it")
        return TARGETS[self.target]

    def __post_init__(self):
        K = len(self.h)
        check_int("K", K, minimum=1, maximum=64)
        if len(self.d) != K or len(self.T) != K:
            raise ValueError(f"h, d and T must have one entry per step; got {len(self.h)}, "
                             f"{len(self.d)} and {len(self.T)}")
        f = self.input_format
        check_int("lo", self.lo, minimum=f.min_int, maximum=f.max_int)
        check_int("hi", self.hi, minimum=self.lo, maximum=f.max_int)
        for name, values in (("h", self.h), ("T", self.T), ("d", self.d)):
            for value in values:  # K <= 64 of them, summed, stay inside int64
                check_int(f"{name} entry", value, minimum=-ENTRY_LIMIT, maximum=ENTRY_LIMIT)
        if self.hi - self.lo > 1 << 20:
            raise ValueError(f"range [{self.lo}, {self.hi}] has more than 2**20 input values")
        _, (o_lo, o_hi), _ = self._exhaustive
        g = self.output_format
        if min(o_lo, *self.d) < g.min_int or max(o_hi, *self.d) > g.max_int:
            raise ValueError(f"the output reaches [{min(o_lo, *self.d)}, {max(o_hi, *self.d)}] "
                             f"(d entries and every partial sum), beyond the output format "
                             f"{g} [{g.min_int}, {g.max_int}]")

    def __eq__(self, other):
        return isinstance(other, SIExpTable) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def _key(self):
        return (self.input_format, self.output_format, self.lo, self.hi, self.h, self.d, self.T)

    @property
    def K(self) -> int:
        return len(self.h)

    @property
    def range(self) -> tuple[float, float]:
        return (float(self.input_format.to_float(self.lo)), float(self.input_format.to_float(self.hi)))

    @cached_property
    def _exhaustive(self):
        """Every input of the clamped range run through the K steps: exact register bounds."""
        v = torch.arange(self.lo, self.hi + 1, dtype=torch.int64)
        out = torch.zeros_like(v)
        v_lo, v_hi = int(v.min()), int(v.max())
        o_lo = o_hi = 0
        for t in range(self.K):
            z = v >= self.T[t]
            out = out + self.d[t] * z
            v = v - self.h[t] * z
            v_lo, v_hi = min(v_lo, int(v.min())), max(v_hi, int(v.max()))
            o_lo, o_hi = min(o_lo, int(out.min())), max(o_hi, int(out.max()))
        return (v_lo, v_hi), (o_lo, o_hi), (int(out.min()), int(out.max()))

    @property
    def potential_format(self) -> Format:
        """Narrowest signed format holding v at every step, and every T (exhaustive)."""
        (v_lo, v_hi), _, _ = self._exhaustive
        return Format.for_range(min(v_lo, *self.T), max(v_hi, *self.T), self.input_format.frac)

    @property
    def accumulator_format(self) -> Format:
        """Narrowest signed format holding ``out`` after every step (exhaustive)."""
        _, (o_lo, o_hi), _ = self._exhaustive
        return Format.for_range(o_lo, o_hi, self.output_format.frac)

    @property
    def output_range(self) -> tuple[int, int]:
        """Smallest and largest final output over the whole input range."""
        return self._exhaustive[2]

    def to_float(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, d, T) as real numbers."""
        return (self.input_format.to_float(torch.tensor(self.h)),
                self.output_format.to_float(torch.tensor(self.d)),
                self.input_format.to_float(torch.tensor(self.T)))

    def to_json(self) -> dict:
        fmt = lambda f: {"width": f.width, "frac": f.frac, "signed": f.signed}  # noqa: E731
        return {"format": "hwgen-si-exp-table/1", "K": self.K, "range": list(self.range),
                "input_format": fmt(self.input_format), "output_format": fmt(self.output_format),
                "lo": self.lo, "hi": self.hi, "h": list(self.h), "d": list(self.d),
                "T": list(self.T), "info": self.info}

    @classmethod
    def from_json(cls, data: dict) -> "SIExpTable":
        if not isinstance(data, dict) or data.get("format") != "hwgen-si-exp-table/1":
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not an SI-exp table (format {found!r}, expected "
                             f"'hwgen-si-exp-table/1')")
        missing = [key for key in ("input_format", "output_format", "lo", "hi", "h", "d", "T")
                   if key not in data]
        if missing:
            raise ValueError(f"SI-exp table lacks {', '.join(missing)}")
        table = cls(Format(**data["input_format"]), Format(**data["output_format"]), data["lo"],
                    data["hi"], tuple(data["h"]), tuple(data["d"]), tuple(data["T"]),
                    data.get("info", {}))
        # K and range are stored for readers; they must say what the tables are.
        if "K" in data and data["K"] != table.K:
            raise ValueError(f"the table file says K = {data['K']!r}; its tables have "
                             f"{table.K} steps")
        if "range" in data and data["range"] != list(table.range):
            raise ValueError(f"the table file says range {data['range']!r}; lo and hi give "
                             f"{list(table.range)}")
        return table

    def save(self, path) -> None:
        """Write the table as JSON to ``path``, making its folder when missing."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path) -> "SIExpTable":
        """Read a table file; a missing or malformed file raises ValueError naming it."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise ValueError(f"cannot read SI-exp table {path}: {error.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"SI-exp table {path} is not JSON ({error})") from None
        try:
            return cls.from_json(data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None


def si_exp(x, table: SIExpTable) -> SIExpResult:
    """Integer SI-exp on ``x`` (input-format integers, any shape)."""
    x = table.input_format.check("x", x)
    v = x.clamp(table.lo, table.hi)
    out = torch.zeros_like(v)
    spikes = torch.zeros_like(v)
    for t in range(table.K):
        z = (v >= table.T[t]).to(torch.int64)
        out += table.d[t] * z
        v -= table.h[t] * z
        spikes += z
    return SIExpResult(out, spikes)


def si_exp_float(x, h, d, T, lo: float, hi: float) -> torch.Tensor:
    """Real-valued twin (float64): the same dynamics on real tables. NaN is refused (it would
    fire nothing and read as 0); infinities clamp like any value outside [lo, hi]."""
    v = torch.as_tensor(x, dtype=torch.float64)
    if v.isnan().any():
        raise ValueError("x must not contain NaN")
    v = v.clamp(lo, hi)
    out = torch.zeros_like(v)
    for t in range(len(h)):
        z = (v >= float(T[t])).to(torch.float64)
        out = out + float(d[t]) * z
        v = v - float(h[t]) * z
    return out


def evaluate_table(table: SIExpTable, points: int = 10_000, target=None) -> dict:
    """Error of the integer model against ``target`` on ``points`` evenly spaced reals of the
    table's range (each quantised to the input format, compared with ``target`` of the real);
    ``points`` from 2 to 10,000,000. ``target`` None is the table's own (:data:`TARGETS`)."""
    check_int("points", points, minimum=2, maximum=10_000_000)
    if target is None:
        target = table.target_function()
    lo, hi = table.range
    xr = torch.linspace(lo, hi, points, dtype=torch.float64)
    res = si_exp(table.input_format.quantise(xr), table)
    err = table.output_format.to_float(res.out) - target(xr)
    mse = float((err ** 2).mean())
    return {"K": table.K, "range": [lo, hi], "points": points, "mse": mse,
            "rmse": math.sqrt(mse), "max_abs": float(err.abs().max()),
            "mean_spikes": float(res.spikes.double().mean())}


def check_exp_table(table: SIExpTable) -> SIExpTable:
    """``table``, refused unless it approximates exp (the spiking softmax's SI-exp)."""
    if not isinstance(table, SIExpTable):
        raise TypeError(f"table must be an SIExpTable, not {type(table).__name__}")
    if table.target != "exp":
        raise ValueError(f"the spiking softmax needs a table of exp; this one approximates "
                         f"{table.target}")
    return table


def _range_tag(lo: float, hi: float) -> str:
    return f"{lo:g}_{hi:g}".replace("-", "m")


def shipped_tables() -> list[Path]:
    """Paths of the shipped tables, by range and then by K."""
    def key(path: Path):
        K, _, tag = path.stem.removeprefix("si_exp_k").partition("_")
        return tag, int(K)
    return sorted(TABLE_DIR.glob("si_exp_k*.json"), key=key)


def shipped_table(K: int, lo: float = -1.0, hi: float = 1.0) -> SIExpTable:
    """The trained table for K steps on [lo, hi] that ships with the package."""
    if not lo < hi:
        raise ValueError(f"range must have lo < hi, not [{lo:g}, {hi:g}]")
    path = table_path(K, lo, hi)
    if not path.exists():
        have = ", ".join(p.stem for p in shipped_tables()) or "none"
        raise ValueError(f"no shipped SI-exp table for K={K} on [{lo:g}, {hi:g}]; shipped: {have}"
                         f" (train one with `python -m golden si-exp fit`)")
    return SIExpTable.load(path)


def table_path(K: int, lo: float, hi: float) -> Path:
    return TABLE_DIR / f"si_exp_k{K}_{_range_tag(lo, hi)}.json"
