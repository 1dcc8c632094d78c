"""Bitstreams for the supported boards: a core under :class:`hwgen.selftest.SelfTest`, on LEDs.

:func:`build` makes a board top (the self-test of one design, its result on LEDs, a heartbeat),
runs the amaranth-boards platform's yosys / nextpnr / pack flow with the YoWASP tools, and writes
``report.json`` next to the bitstream: utilisation, Fmax against the board clock, bitstream size.

LEDs (see :data:`boards.BOARDS` for each board's pins): *passed* (green, LED0) lights once a full
pass over the vectors has matched and nothing ever mismatched; *failed* (red, LED1) lights on
the first mismatch and stays lit until reset; *heartbeat* blinks at about 1 Hz or slower, showing
that the bitstream is loaded and clocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amaranth import Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.utils import ceil_log2

from boards import Board, get_board
from boards.dfu import append_dfu_suffix, has_dfu_suffix
from golden.fixed import check_int

from .cores import core_parameters, make_core
from .report import MAX_PLACER_SEED, ToolError, log_tail, source_commit
from .selftest import (SelfTest, SelfTestVectors, attention_selftest_vectors,
                       neuron_selftest_vectors, softmax_selftest_vectors)

__all__ = ["DESIGNS", "BoardTop", "Design", "build", "default_out_dir", "get_design"]

#: nextpnr's machine-readable report, written into the build directory.
NEXTPNR_REPORT = "nextpnr_report.json"


@dataclass(frozen=True)
class Design:
    """A buildable design: core ``core`` (a key of :data:`hwgen.cores.CORES`) with ``params``
    (the rest at their defaults), self-tested on the vectors ``vectors(core, samples,
    vector_seed)`` returns: for the neuron populations
    :func:`~hwgen.selftest.neuron_selftest_vectors` (``samples`` random samples after the edge
    samples), for the spiking softmax :func:`~hwgen.selftest.softmax_selftest_vectors`
    (``samples`` random rows after the edge rows), for the attention head
    :func:`~hwgen.selftest.attention_selftest_vectors` (``samples`` random heads after the edge
    head)."""

    name: str
    core: str
    params: dict = field(default_factory=dict)
    samples: int = 1
    vector_seed: int = 1
    vectors: Callable[[object, int, int], SelfTestVectors] = neuron_selftest_vectors
    description: str = ""

    def make_core(self):
        """A fresh instance of the design's core."""
        return make_core(self.core, self.params)

    def make_vectors(self, core) -> SelfTestVectors:
        """The self-test vectors of ``core`` (an instance from :meth:`make_core`)."""
        return self.vectors(core, self.samples, self.vector_seed)


#: Design name -> :class:`Design`. The first entry is the default.
DESIGNS: dict[str, Design] = {d.name: d for d in [
    Design("if-selftest", "if",
           description="IF population at its default parameters, self-tested on LEDs"),
    Design("mt-selftest", "mt",
           description="MT population at its default parameters, self-tested on LEDs"),
    Design("softmax", "softmax", samples=32, vectors=softmax_selftest_vectors,
           description="spiking softmax, the default core (rows of up to 16 scores, max "
                       "subtraction, K = 12 on [-8, 0], N = 256), self-tested on LEDs"),
    # Four random heads of 1/4 to full density after the edge head: 80 beats per pass, so each
    # ROM fits the block RAMs of one 256-word depth (iCE40: 4 of 61 bits, 2 of 21 bits).
    Design("attention", "attention", samples=4, vectors=attention_selftest_vectors,
           description="attention head, the default head (4 tokens, head_dim 4, T = 4, 4 "
                       "levels), lanes = 1, self-tested on LEDs"),
]}


def get_design(name: str) -> Design:
    """The :class:`Design` called ``name``; :class:`ValueError` naming the known designs if none."""
    try:
        return DESIGNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown design {name!r}; known designs: {', '.join(DESIGNS)}") from None


def default_out_dir(board: str, design: str) -> Path:
    """The build directory of :func:`build` when none is given: ``build/<board>-<design>``."""
    return Path("build") / f"{get_board(board).name}-{get_design(design).name}"


class BoardTop(Elaboratable):
    """A :class:`SelfTest` with its ``passed`` and ``failed`` outputs and a heartbeat on the
    board's LEDs. Runs in the platform's default ``sync`` domain (the board clock, with the
    platform's power-on reset)."""

    def __init__(self, selftest: SelfTest, board: Board):
        self._selftest = selftest
        self._board = board

    def elaborate(self, platform):
        m = Module()
        m.submodules.selftest = selftest = self._selftest

        # The top bit of a counter wrapping every 2**ceil(log2(f)) cycles: a period of 1 to 2 s.
        beat = Signal(ceil_log2(int(self._board.clock_hz)))
        m.d.sync += beat.eq(beat + 1)

        requested = {}
        for role, value in (("passed", selftest.passed), ("failed", selftest.failed),
                            ("heartbeat", beat[-1])):
            led = self._board.leds[role]
            # An RGB LED is one resource with a subsignal per colour; request it once.
            key = (led.resource, led.number)
            if key not in requested:
                requested[key] = platform.request(led.resource, led.number, dir="-")
            port = requested[key]
            if led.subsignal is not None:
                port = getattr(port, led.subsignal)
            m.submodules[f"led_{role}"] = buffer = io.Buffer("o", port)
            m.d.comb += buffer.o.eq(value)
        return m


def _progress(message: str) -> None:
    print(f"build: {message}", file=sys.stderr, flush=True)


@contextmanager
def _environment(variables: dict[str, str]):
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build(board: str = "icebreaker", design: str = "if-selftest",
          out_dir: str | Path | None = None, *, seed: int = 1) -> dict:
    """Build the bitstream of ``design`` for ``board``; write and return its report.

    Parameters
    ----------
    board : str
        A key of :data:`boards.BOARDS`.
    design : str
        A key of :data:`DESIGNS`.
    out_dir : path or None
        Build directory (created if missing); ``build/<board>-<design>`` if None. It receives
        the platform's files (``top.il``, ``top.rpt`` yosys log, ``top.tim`` nextpnr log, the
        bitstream), ``nextpnr_report.json`` and ``report.json``.
    seed : int
        nextpnr placer seed (the vectors have their own fixed seed, ``Design.vector_seed``).

    Returns
    -------
    dict
        The contents of ``report.json``: ``board``, ``device``, ``design``, ``core`` (registry
        name, class, every parameter value, latency, throughput), ``vectors`` (input beats per
        pass; samples: the edge and random samples, rows for the softmax, heads for the
        attention head; seed),
        ``utilisation`` (per nextpnr bel type, ``{"used", "available"}``), ``fmax_mhz``
        (achieved, slowest clock), ``clock_mhz`` (the board clock, which is the constraint),
        ``meets_clock``, ``bitstream`` (``file`` name in ``out_dir``, ``bytes``,
        ``dfu_suffix``: whether the file ends in the DFU suffix of a board loaded over DFU),
        ``seed``, ``commit`` (``git describe`` of the code, None outside a checkout),
        ``out_dir`` and ``elapsed_s`` (wall time of the whole call).
    """
    start = time.monotonic()
    target = get_board(board)
    spec = get_design(design)
    check_int("seed", seed, minimum=0, maximum=MAX_PLACER_SEED)
    out_dir = default_out_dir(board, design) if out_dir is None else Path(out_dir)

    core = spec.make_core()
    vectors = spec.make_vectors(core)
    params = {p.name: p.default for p in core_parameters(spec.core)}
    params.update(spec.params)
    _progress(f"{target.name}/{spec.name}: {type(core).__name__} {params}, "
              f"{len(vectors.inputs)} vectors ({vectors.samples} samples)")
    top = BoardTop(SelfTest(core, vectors.inputs, vectors.expected), target)

    platform = target.platform()
    _progress(f"yosys, nextpnr and pack for {target.device} in {out_dir} "
              f"(logs top.rpt, top.tim)")
    try:
        with _environment(target.environment()):
            platform.build(top, name="top", build_dir=str(out_dir), do_program=False,
                           nextpnr_opts=f"--report {NEXTPNR_REPORT} --timing-allow-fail "
                                        f"--seed {seed}")
    except subprocess.CalledProcessError as error:
        tails = "\n".join(f"--- {log.name} ---\n{log_tail(log)}"
                          for log in (out_dir / "top.rpt", out_dir / "top.tim") if log.exists())
        raise ToolError(f"building {spec.name} for {target.name} failed ({error}); "
                        f"last lines of the logs in {out_dir}:\n{tails}") from None

    pnr = json.loads((out_dir / NEXTPNR_REPORT).read_text())
    clocks = pnr.get("fmax", {})
    if not clocks:
        raise ToolError(f"{out_dir / NEXTPNR_REPORT} has no Fmax entry")
    clock_name = min(clocks, key=lambda c: clocks[c]["achieved"])
    fmax = clocks[clock_name]["achieved"]
    clock_mhz = target.clock_hz / 1e6
    bitstream = out_dir / target.bitstream
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise ToolError(f"the build of {spec.name} for {target.name} left no bitstream "
                        f"{bitstream}; see {out_dir / 'top.tim'}")
    if target.dfu_ids is not None:
        append_dfu_suffix(bitstream, *target.dfu_ids)

    report = {
        "board": target.name,
        "device": target.device,
        "design": spec.name,
        "core": {
            "name": spec.core,
            "class": type(core).__name__,
            "parameters": params,
            "latency": core.latency,
            "throughput": core.throughput,
        },
        "vectors": {
            "input_beats": len(vectors.inputs),
            "samples": vectors.samples,
            "seed": spec.vector_seed,
        },
        "utilisation": pnr["utilization"],
        "fmax_mhz": round(fmax, 2),
        "clock_mhz": clock_mhz,
        "meets_clock": fmax >= clock_mhz,
        "clock_net": clock_name,
        "bitstream": {"file": bitstream.name, "bytes": bitstream.stat().st_size,
                      "dfu_suffix": has_dfu_suffix(bitstream.read_bytes())},
        "seed": seed,
        "commit": source_commit(),
        "out_dir": str(out_dir),
        "elapsed_s": round(time.monotonic() - start, 1),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    used = {bel: u["used"] for bel, u in pnr["utilization"].items() if u["used"]}
    _progress(f"Fmax {fmax:.1f} MHz for a {clock_mhz:g} MHz clock "
              f"({'meets' if report['meets_clock'] else 'MISSES'} it); used {used}; "
              f"{bitstream} ({report['bitstream']['bytes']} bytes); "
              f"{report['elapsed_s']} s")
    return report
