"""Fixed-point formats (numeric contract D1).

A value is a two's-complement integer with a declared :class:`Format`: signedness, total width
and number of fractional bits. The golden model computes on ``torch.int64`` tensors holding
exactly the bits the hardware holds; the format says how to read them as real numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Format", "INT64_MAX", "MAX_WIDTH", "bits_for_range", "check_int",
           "check_running_sum", "max_magnitude"]

#: The largest int64: the golden integer operators refuse results that would wrap beyond it.
INT64_MAX = (1 << 63) - 1
MAX_WIDTH = 62  #: widest format: sums of two values stay inside int64


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer within bounds; otherwise raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        if maximum is not None:
            raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, not {value}")
        raise ValueError(f"{name} must be an integer greater than or equal to {minimum}, not {value}")
    if maximum is not None and value > maximum:
        if minimum is not None:
            raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, not {value}")
        raise ValueError(f"{name} must be an integer less than or equal to {maximum}, not {value}")
    return value


def bits_for_range(lo: int, hi: int) -> int:
    """Width of the smallest two's-complement signed integer holding every value in [lo, hi]."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


@dataclass(frozen=True)
class Format:
    """A two's-complement fixed-point format.

    ``width`` counts every bit including the sign bit; ``frac`` bits lie right of the binary
    point, so the integer ``q`` stands for the real number ``q * 2**-frac``.
    """

    width: int
    frac: int = 0
    signed: bool = True

    def __post_init__(self):
        check_int("width", self.width, minimum=2 if self.signed else 1, maximum=MAX_WIDTH)
        check_int("frac", self.frac, minimum=-64, maximum=64)
        if not isinstance(self.signed, bool):
            raise TypeError(f"signed must be a bool, not {self.signed!r}")

    @classmethod
    def for_range(cls, lo: int, hi: int, frac: int = 0, what: str = "the range") -> "Format":
        """The narrowest signed format whose integers cover [lo, hi]; ``what`` names the
        range in the error when no format is wide enough."""
        bits = bits_for_range(lo, hi)
        if bits > MAX_WIDTH:
            raise ValueError(f"{what} [{lo}, {hi}] needs {bits} bits; formats hold at most "
                             f"{MAX_WIDTH}")
        return cls(width=max(2, bits), frac=frac, signed=True)

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def min(self) -> float:
        return self.min_int * self.lsb

    @property
    def max(self) -> float:
        return self.max_int * self.lsb

    def __str__(self) -> str:
        kind = "s" if self.signed else "u"
        return f"{kind}{self.width}.{self.frac}"

    def quantise(self, x) -> torch.Tensor:
        """Real → integer: round half up (``floor(x * 2**frac + 0.5)``, exactly), then
        saturate."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if torch.isnan(x).any():
            raise ValueError("cannot quantise NaN")
        scaled = x * 2.0 ** self.frac  # exact: a power-of-two scale
        q = torch.floor(scaled)
        q = q + (scaled - q >= 0.5)  # adding 0.5 first would round 0.49999999999999994 up
        # Saturate before converting: max_int need not be a float64, max_int + 1 (a power of
        # two) is.
        above = q >= float(self.max_int + 1)
        q = torch.where(above, 0.0, q).clamp(min=float(self.min_int)).to(torch.int64)
        return torch.where(above, self.max_int, q)

    def _integers(self, name: str, q) -> torch.Tensor:
        """``q`` as int64; a real or boolean tensor is refused, never truncated."""
        q = torch.as_tensor(q)
        if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor in format {self}, not {q.dtype}")
        return q.to(torch.int64)

    def saturate(self, q) -> torch.Tensor:
        """Clamp integers into the format's range."""
        return self._integers("q", q).clamp(self.min_int, self.max_int)

    def to_float(self, q) -> torch.Tensor:
        """Integer → real (float64, exact for widths up to 53 bits)."""
        return self._integers("q", q).to(torch.float64) * self.lsb

    def contains(self, q) -> bool:
        q = self._integers("q", q)
        return bool(((q >= self.min_int) & (q <= self.max_int)).all())

    def check(self, name: str, q) -> torch.Tensor:
        """Return ``q`` as int64 if every element fits; otherwise raise naming ``name``."""
        q = self._integers(name, q)
        if q.numel() and not self.contains(q):
            raise ValueError(
                f"{name} has values from {int(q.min())} to {int(q.max())}; format {self} allows "
                f"{self.min_int} to {self.max_int}")
        return q

    def quantise_scalar(self, name: str, x: float) -> int:
        """Quantise one real parameter; raise if it falls outside the format instead of saturating."""
        if not math.isfinite(float(x)):
            raise ValueError(f"{name} = {x} is not a finite number; format {self} holds "
                             f"{self.min} to {self.max}")
        # The real is checked, not only its rounding: half an LSB below min would round into
        # the format and half an LSB above max would not. The integer is checked too, since a
        # format wider than float64 has a max that rounds up to a power of two.
        scaled = float(x) * 2.0 ** self.frac
        q = math.floor(scaled) if self.min <= float(x) <= self.max else None
        if q is not None and scaled - q >= 0.5:  # round half up, exactly (see quantise)
            q += 1
        if q is None or not self.min_int <= q <= self.max_int:
            raise ValueError(f"{name} = {x} is outside format {self} ({self.min} to {self.max})")
        return q


def max_magnitude(x: torch.Tensor) -> int:
    """The largest |element| of integer ``x`` as a Python int, 0 if empty. (``x.abs()`` would
    wrap an int64 −2**63 to itself, a negative magnitude.)"""
    return max(-int(x.min()), int(x.max())) if x.numel() else 0


def check_running_sum(name: str, x: torch.Tensor, extra: int) -> None:
    """Refuse integer inputs ``x`` of shape ``(T, ...)`` whose running sum over the T steps,
    plus ``extra`` (what a neuron may hold besides), could leave int64."""
    if x.numel() == 0:
        return
    magnitude = max_magnitude(x)
    if magnitude * x.shape[0] + extra > INT64_MAX:
        raise ValueError(f"{name} reaches {magnitude} in magnitude; over {x.shape[0]} steps "
                         f"(plus {extra}) a membrane could leave int64")
