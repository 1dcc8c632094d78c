"""Packing stream payloads to and from the flat vectors of the emitted Verilog.

Amaranth flattens a struct payload into one unsigned port (fields LSB first) and does not mark
ports signed; the testbench exchanges plain integers and this module translates. Nested layouts
are followed: a field whose shape is an :class:`~amaranth.lib.data.ArrayLayout` takes (and
:func:`unpack` gives) a list of its elements, a nested struct or union a dict.
"""

from __future__ import annotations

from amaranth import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack"]


def _fields(layout):
    layout = data.Layout.cast(layout) if not isinstance(layout, data.Layout) else layout
    for name, field in layout:
        if isinstance(field.shape, data.Layout):
            yield name, field.offset, field.shape, None
        else:
            shape = Shape.cast(field.shape)
            yield name, field.offset, shape.width, shape.signed


def _is_array(layout) -> bool:
    return isinstance(data.Layout.cast(layout), data.ArrayLayout)


def pack(layout, values) -> int:
    """Fields → flat unsigned integer; a value that does not fit its field raises. ``values``
    is a dict by field name, or for an array layout a sequence of its elements."""
    if _is_array(layout):
        length = data.Layout.cast(layout).length
        if len(values) != length:
            raise ValueError(f"an array of {length} elements needs {length} values, not "
                             f"{len(values)}")
        values = dict(enumerate(values))
    word = 0
    names = set()
    for name, offset, width, signed in _fields(layout):
        names.add(name)
        if signed is None:  # a nested layout
            word |= pack(width, values[name]) << offset
            continue
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


def unpack(layout, word: int):
    """Flat unsigned integer → fields (signed fields sign-extended): a dict by field name, or
    for an array layout a list."""
    values = {}
    for name, offset, width, signed in _fields(layout):
        if signed is None:
            values[name] = unpack(width, word >> offset)
            continue
        value = (word >> offset) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        values[name] = value
    return list(values.values()) if _is_array(layout) else values
