"""Packing stream payloads to and from the flat vectors of the emitted Verilog.

Amaranth flattens a struct payload into one unsigned port (fields LSB first) and does not mark
ports signed; the testbench exchanges plain integers and this module translates.
"""

from __future__ import annotations

from amaranth import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack"]


def _fields(layout):
    layout = data.Layout.cast(layout) if not isinstance(layout, data.Layout) else layout
    for name, field in layout:
        shape = Shape.cast(field.shape)
        yield name, field.offset, shape.width, shape.signed


def pack(layout, values: dict[str, int]) -> int:
    """Fields → flat unsigned integer; a value that does not fit its field raises."""
    word = 0
    names = set()
    for name, offset, width, signed in _fields(layout):
        names.add(name)
        value = int(values[name])
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"field {name} = {value} does not fit {width} bits "
                             f"({'signed' if signed else 'unsigned'}: {lo} to {hi})")
        word |= (value & ((1 << width) - 1)) << offset
    extra = set(values) - names
    if extra:
        raise ValueError(f"unknown fields {sorted(extra)}; the layout has {sorted(names)}")
    return word


def unpack(layout, word: int) -> dict[str, int]:
    """Flat unsigned integer → fields (signed fields sign-extended)."""
    values = {}
    for name, offset, width, signed in _fields(layout):
        value = (word >> offset) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        values[name] = value
    return values
