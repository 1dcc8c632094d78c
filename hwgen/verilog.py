"""Verilog emission."""

from __future__ import annotations

from amaranth.back import verilog

__all__ = ["emit"]


def emit(core, name: str) -> str:
    """Verilog text of ``core`` as module ``name`` (ports: ``clk``, ``rst``, ``i__*``, ``o__*``)."""
    return verilog.convert(core, name=name, emit_src=False)
