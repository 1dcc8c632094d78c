"""Verilog emission."""

from __future__ import annotations

import re

from amaranth.back import verilog

__all__ = ["emit"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def emit(core, name: str) -> str:
    """Verilog text of ``core`` as module ``name`` (ports: ``clk``, ``rst``, ``i__*``, ``o__*``).

    ``name`` must be a plain identifier (letters, digits, _) and not a keyword: a name that the
    Verilog has to escape (``\\logic``) could not be instantiated by its plain name."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"module name must be a Verilog identifier (a letter or _, then "
                         f"letters, digits or _), not {name!r}")
    text = verilog.convert(core, name=name, emit_src=False)
    # Yosys's own keyword list (Verilog and SystemVerilog) decides what it escapes.
    if f"\nmodule {name}(" not in text:
        raise ValueError(f"module name must not be a Verilog or SystemVerilog keyword, "
                         f"not {name!r}")
    return text
