"""Cycle-based energy of the attention head core, beside the operation-count models of SIT and
ECMT for the same head (``python -m hwgen energy attention``).

:func:`head_operations` counts what :class:`~hwgen.cores.attention.AttentionHead` computes in
one time step, from its structure: every carry chain of its datapath (adds, subtractions,
comparisons) and every memory access whose value the datapath uses. The counts do not depend
on the codes: the core walks every (i, j) pair and every dimension whether a code is 0 or not
(a zero code selects 0 into the sums). :func:`measure_head` runs the core in the Amaranth
simulator on one head and counts the cycles per step and the events that can be seen from
outside the datapath (memory writes, divisions, softmax beats), which the tests compare with
the formulas. :func:`energy_table` prices one head-step and one head (T steps):

* **hardware, E_AC per add**: every add-equivalent at E_AC, the price SIT and ECMT give one
  spike-driven addition, so the counts compare on the models' own terms (memory not counted,
  as in the models);
* **hardware, integer adds by width + SRAM**: every add at the energy of an integer adder of
  its width and every memory access at the energy of an SRAM access of its word width;
* **ANN**: the 2·n²·d MACs of QKᵀ and AV at E_MAC (softmax not counted, as in both papers and
  :mod:`golden.energy`);
* **SIT**: FLOPs × spikes per neuron of the operands over the T steps × E_AC (SIT §4.1.2 as
  :mod:`golden.energy` applies it to a matmul-ECM: the spike rates of both operands add);
* **ECMT**: the synaptic operations of both matmul-ECMs by ECMT's own rule (its ``SOPMonitor``:
  products counted where both operands are nonzero, :func:`golden.attention.matmul_sops`)
  × E_AC.

Energies per operation (45 nm, 0.9 V; Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014; see docs/decisions.md, "Energy of the attention core"): ``E_MAC = 4.6
pJ`` and ``E_AC = 0.9 pJ`` are the 32-bit floating-point multiply-add and add that SIT and ECMT
quote (:data:`golden.energy.E_MAC_PJ`, :data:`golden.energy.E_AC_PJ`); integer adds cost 0.03
and 0.1 pJ at 8 and 32 bits (:data:`INT_ADD_PJ`, interpolated linearly in the width);
a 64-bit read of an 8 KB SRAM costs 10 pJ (:data:`SRAM_ACCESS_PJ`), taken per bit
(``10 pJ · bits / 64``) for reads and writes alike, an upper bound for the core's memories of at
most a few hundred words. No FPGA figure (cycles × power) is given: there is no measured or
vendor-estimated power of the design to multiply by.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from amaranth.lib import memory
from amaranth.sim import Simulator

from golden.attention import attention_head, check_codes, random_codes
from golden.energy import E_AC_PJ, E_MAC_PJ
from golden.fixed import check_int

from .cores.attention import AttentionHead
from .cores.si_exp import table_rows

__all__ = ["ENERGY_CORES", "E_AC_PJ", "E_MAC_PJ", "INT_ADD_PJ", "SRAM_ACCESS_PJ",
           "SRAM_ACCESS_BITS", "Operation", "add_energy_pj", "energy_table", "format_markdown",
           "head_operations", "measure_head", "sram_energy_pj"]

#: Registry names of the cores this module models.
ENERGY_CORES = ("attention",)
#: Largest seed of the random codes: a signed 32-bit integer, as the placer seed of
#: ``python -m hwgen report`` and ``build``.
MAX_SEED = (1 << 31) - 1

#: Integer adder energy in pJ by width in bits (Horowitz, ISSCC 2014, 45 nm).
INT_ADD_PJ = {8: 0.03, 32: 0.1}
#: Energy in pJ of one access of :data:`SRAM_ACCESS_BITS` bits to an 8 KB SRAM (Horowitz, ISSCC
#: 2014, 45 nm: a 64-bit cache read).
SRAM_ACCESS_PJ = 10.0
SRAM_ACCESS_BITS = 64


def add_energy_pj(bits: int) -> float:
    """Energy of a ``bits``-wide integer add in pJ: :data:`INT_ADD_PJ` interpolated linearly
    between its widths and scaled in proportion to the width outside them (a ripple adder's
    energy grows with its width)."""
    check_int("bits", bits, minimum=1)
    widths = sorted(INT_ADD_PJ)
    if bits <= widths[0]:
        return INT_ADD_PJ[widths[0]] * bits / widths[0]
    if bits >= widths[-1]:
        return INT_ADD_PJ[widths[-1]] * bits / widths[-1]
    for lo, hi in zip(widths, widths[1:]):
        if bits <= hi:
            return INT_ADD_PJ[lo] + (INT_ADD_PJ[hi] - INT_ADD_PJ[lo]) * (bits - lo) / (hi - lo)
    raise AssertionError("unreachable")


def sram_energy_pj(bits: int) -> float:
    """Energy of one read or write of a ``bits``-wide word in pJ: :data:`SRAM_ACCESS_PJ` per
    :data:`SRAM_ACCESS_BITS` bits."""
    check_int("bits", bits, minimum=1)
    return SRAM_ACCESS_PJ * bits / SRAM_ACCESS_BITS


class Operation(NamedTuple):
    """One kind of work the core does per time step.

    ``kind`` is "add" (``count`` events of ``adds`` carry chains each, ``bits`` wide), "read"
    or "write" (``count`` accesses of ``bits``-bit words to the memories ``memories``, the
    core's submodule names; ``adds`` is 0). ``what`` gives the formula and the meaning."""

    kind: str
    count: int
    adds: int
    bits: int
    what: str
    memories: tuple[str, ...] = ()

    @property
    def add_count(self) -> int:
        """Carry chains per step (0 for memory accesses)."""
        return self.count * self.adds

    def energy_pj(self) -> float:
        """Energy per step with integer adds by width and SRAM accesses by word width."""
        if self.kind == "add":
            return self.add_count * add_energy_pj(self.bits)
        return self.count * sram_energy_pj(self.bits)


def _check_core(core) -> AttentionHead:
    if not isinstance(core, AttentionHead):
        raise TypeError(f"core must be an AttentionHead, not {type(core).__name__}")
    return core


def head_operations(core) -> dict[str, Operation]:
    """Operations of ``core`` (an :class:`~hwgen.cores.attention.AttentionHead`) per time step.

    With n tokens, d = head_dim, ``lanes`` lanes, ``ch = ceil(d / lanes)`` chunks (the MACs
    work on ``ch·lanes >= d`` dimensions; padding dimensions hold code 0 and still take their
    adders), K SI-exp steps, N = 2**q, ``Wc, Wx, Wo`` the dividend widths of the three
    divisions by t (:attr:`~AttentionHead.divider_widths`), each taking its divider's steps per
    cycle (Sc, Sx, So: :attr:`~AttentionHead.divider_steps`) times its latency (Lc, Lx, Lo) in
    restoring steps:

    ============= =========================== ===== ============================================
    name          events per step             adds  per event
    ============= =========================== ===== ============================================
    score_mac     2·n²·ch·lanes shift-adds    2     Q_t·SK_t, SQ_(t-1)·K_t per (i, j, dim.):
                                                    conditional negation, add into P[i][j]
    score_sums    2·n²·ch·lanes               1     SQ + Q, SK + K, recomputed for every
                                                    partner (n times the 2·n·d updates)
    score_div     n²·Sc·Lc                    1     restoring steps of floor(P / t)
    score_scale   n²                          w(M)  C·M as signed digits, + t << shift
    scale_div     n²·Sx·Lx                    1     restoring steps of X = floor(Z / t)
    softmax_max   n²                          2     running-maximum compare, x − max
    si_exp_clamp  n²                          3     x < lo, x > hi, first threshold
    si_exp_steps  n²·K                        4     potential − h, two threshold compares, out + d
    row_sum       n²                          1     Vth += e
    si_norm_steps n²·(q + 2)                  1     N·e + v_init, then q + 1 divider stages
    prob_times_t  n²                          Wt−1  t·c as a sum of copies selected by t's bits
    mt_s          n²                          6     MT at the probabilities: t·c − (t−1)·c_(t−1),
                                                    + V, the negation −V, two threshold
                                                    increments (one on −V), V − emitted
    prob_sum      n²                          1     SA + A
    out_mac       2·n²·ch·lanes shift-adds    2     A_t·SV_t and SA_(t-1)·V_t per (i, j, dim.)
    out_sums      n²·ch·lanes                 1     SV + V, recomputed for every row
    out_div       n·ch·lanes·So·Lo            1     restoring steps of floor(P2 / t)
    mt_out        n·ch·lanes                  6     MT at the output (as mt_s)
    ============= =========================== ===== ============================================

    ``w(M)`` is the number of nonzero signed digits of the score constant M, ``Wt`` the width
    of the step counter t. A restoring step is counted as one subtraction of the divisor width
    plus one bit (its borrow is the quotient bit). Shifts, multiplexers, the OR trees of the
    code and level encoders, and the control counters are not counted; the SI-exp's spike
    counter is left out (the softmax does not use it, so synthesis removes it).

    Memory accesses (``read.NAME``, ``write.NAME``; per-lane memories summed over the lanes)
    count one read per value the datapath consumes and one write per value stored: codes,
    SQ, SK, SV, P2, C2 and V_out are written n·ch times per lane; P, cum, V_s, SA, the
    probability rows and the softmax's two row buffers n² times. The FPGA's read ports read
    on more cycles than that (their enables are tied high or to the pipeline's advance), which
    an ASIC would gate.

    Returns
    -------
    dict
        name -> :class:`Operation`, arithmetic first, then reads and writes.
    """
    core = _check_core(core)
    c = core.config
    n, lanes, K = c.tokens, core.lanes, c.table.K
    ch = core.chunks
    w = core.widths
    t_bits = w["t (unsigned)"]
    step_bits = t_bits + 1  # a restoring step: the remainder (divisor width) and one more bit
    sm = core.softmax_core()
    sm._MustUse__silence = True  # built only for its parameters
    M, _ = c.score_constant
    log_bits = w["stored code (unsigned)"]
    entries = n * n * ch * lanes  # MAC entries times lanes, per MAC
    outs = n * ch * lanes  # output values, padding dimensions included

    # Restoring steps per division: steps per cycle × cycles (a padded last cycle included).
    steps = dict(zip(("c", "x", "o"), (per_cycle * latency for per_cycle, latency
                                       in zip(core.divider_steps, core.divider_latencies))))

    add = {
        "score_mac": (2 * entries, 2, w["P"] + 2,
                      "2·n²·ch·lanes shift-adds (Q_t·SK_t, SQ_(t-1)·K_t): negation, add"),
        "score_sums": (2 * entries, 1, max(w["SQ"], w["SK"]),
                       "2·n²·ch·lanes running-sum adds SQ + Q, SK + K (recomputed per use)"),
        "score_div": (n * n * steps["c"], 1, step_bits,
                      f"n² divisions floor(P / t) × {steps['c']} restoring steps"),
        "score_scale": (n * n, len(core.score_constant_digits), w["Y"],
                        f"n² scalings C·M + (t << shift), M = {M}: w(M) − 1 digit adds and "
                        f"the rounding add"),
        "scale_div": (n * n * steps["x"], 1, step_bits,
                      f"n² divisions floor(Z / t) × {steps['x']} restoring steps"),
        "softmax_max": (n * n, 2, sm.x_width + 1, "n² scores: running-max compare, x − max"),
        "si_exp_clamp": (n * n, 3, sm.table.input_format.width,
                         "n² clamps: x < lo, x > hi, first threshold"),
        "si_exp_steps": (n * n * K, 4, sm.table.potential_format.width,
                         f"n²·K SI-exp steps (K = {K}): v − h, two compares, out + d"),
        "row_sum": (n * n, 1, sm.vth_width, "n² row-sum adds Vth += e"),
        "si_norm_steps": (n * n * (sm.q + 2), 1, sm.vth_width + 2,
                          f"n²·(q + 2) SI-norm stages (q = {sm.q}): input add, q + 1 divider "
                          f"stages"),
        "prob_times_t": (n * n, t_bits - 1, w["cum (unsigned)"],
                         "n² products t·c as sums of copies selected by t's bits"),
        "mt_s": (n * n, 6, w["V_s"], "n² MT decisions at the probabilities"),
        "prob_sum": (n * n, 1, w["SA"], "n² running-sum adds SA + A"),
        "out_mac": (2 * entries, 2, w["P2"] + 2,
                    "2·n²·ch·lanes shift-adds (A_t·SV_t, SA_(t-1)·V_t): negation, add"),
        "out_sums": (entries, 1, w["SV"], "n²·ch·lanes running-sum adds SV + V (per use)"),
        "out_div": (outs * steps["o"], 1, step_bits,
                    f"n·ch·lanes divisions floor(P2 / t) × {steps['o']} restoring steps"),
        "mt_out": (outs, 6, w["V_out"], "n·ch·lanes MT decisions at the output"),
    }
    ops = {name: Operation("add", count, adds, bits, what)
           for name, (count, adds, bits, what) in add.items()}

    def per_lane(name):
        return tuple(f"{name}{b}" for b in range(lanes)) if lanes > 1 else (name,)

    # name: (word bits, (reads, formula), (writes, formula), memories, contents)
    rows = n * ch * lanes  # one value per token (or row) and dimension, per lane memory
    per_entry = (entries, "n²·ch·lanes: one per MAC entry and lane")
    per_value = (rows, "n·ch·lanes: one per token and dimension")
    per_score = (n * n, "n²: one per score")
    mem = {
        "q_codes": (log_bits, per_entry, per_value, per_lane("q_codes"), "Q codes"),
        "k_codes": (log_bits, per_entry, per_value, per_lane("k_codes"), "K codes"),
        "v_codes": (log_bits, per_entry, per_value, per_lane("v_codes"), "V codes"),
        "sq": (w["SQ"], per_entry, per_value, per_lane("sq"), "running sums SQ"),
        "sk": (w["SK"], per_entry, per_value, per_lane("sk"), "running sums SK"),
        "sv": (w["SV"], per_entry, per_value, per_lane("sv"), "running sums SV"),
        "p": (w["P"], per_score, per_score, ("p",), "scores P"),
        "cum": (w["cum (unsigned)"], per_score, per_score, ("cum",),
                "cumulative probabilities t·c"),
        "v_s": (w["V_s"], per_score, per_score, ("v_s",), "MT membranes at the probabilities"),
        "sa": (w["SA"], per_score, per_score, ("sa",), "running sums SA"),
        "prob_rows": (log_bits + w["SA"], (n * n * ch, "n²·ch: one per output MAC entry"),
                      per_score, ("prob_rows",), "probability rows (code, SA_(t-1))"),
        "p2": (w["P2"], per_value, per_value, per_lane("p2"), "output products P2"),
        "c2": (w["C2"], per_value, per_value, per_lane("c2"), "output quotients C2"),
        "v_out": (w["V_out"], per_value, per_value, per_lane("v_out"),
                  "MT membranes at the output"),
        "x_buffer": (sm.x_width, per_score, per_score, ("softmax.x_buffer",),
                     "softmax score rows"),
        "e_buffer": (sm.e_width, per_score, per_score, ("softmax.e_buffer",),
                     "softmax exponential rows"),
    }
    if sm.variant == "iterative":
        mem["si_exp_rows"] = (table_rows(sm.table)[0].size,
                              (n * n * K, "n²·K: one per SI-exp step"), (0, ""),
                              ("softmax.exp.rows",), "SI-exp table rows (iterative SI-exp)")
    for index, kind in enumerate(("read", "write")):
        for name, (bits, *counts, memories, contents) in mem.items():
            count, formula = counts[index]
            if count:
                ops[f"{kind}.{name}"] = Operation(kind, count, 0, bits,
                                                  f"{contents}: {formula}", memories)
    return ops


def _head_codes(core, codes, density: float, seed: int):
    c = core.config
    if codes is None:
        if isinstance(density, bool) or not isinstance(density, (int, float)) or \
                not 0 <= density <= 1:
            raise ValueError(f"density must be a number from 0 to 1, not {density!r}")
        check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        generator = torch.Generator().manual_seed(seed)
        shape = (c.time_steps, c.tokens, c.head_dim)
        return tuple(random_codes(shape, c.levels, density, generator) for _ in range(3))
    if not isinstance(codes, (tuple, list)) or len(codes) != 3:
        raise ValueError("codes must be a (q, k, v) triple of MT code tensors of shape "
                         "(steps, tokens, head_dim)")
    q, k, v = (check_codes(name, x, c.levels) for name, x in zip(("q", "k", "v"), codes))
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 3 or tuple(x.shape[1:]) != (c.tokens, c.head_dim) or \
                not 1 <= x.shape[0] <= c.time_steps:
            raise ValueError(f"codes {name} must have shape (steps, tokens={c.tokens}, "
                             f"head_dim={c.head_dim}) with 1 to {c.time_steps} steps, not "
                             f"{tuple(x.shape)}")
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"codes q, k and v must have one shape, not {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    return q, k, v


def measure_head(core, codes=None, *, density: float = 0.5, seed: int = 0) -> dict:
    """Run ``core`` on one head in the Amaranth simulator and count, per head.

    ``codes`` is a ``(q, k, v)`` triple of MT code tensors of shape (steps, tokens, head_dim),
    or None for random codes of fire probability ``density`` drawn with ``seed``
    (:func:`golden.attention.random_codes`). The head starts with ``first = 1``; inputs are
    offered and outputs taken in every cycle (no stalls).

    Returns
    -------
    dict
        ``steps``; ``cycles_per_step``, the cycles between the transfers of consecutive steps'
        first input beats (steps - 1 values); ``writes``, memory name -> write-enabled cycles
        (the core's own memories); ``reads_enabled``, memory name -> cycles with the read
        port enabled (what the FPGA reads, used or not); ``divisions``, divider name ->
        values entered; ``softmax_in`` and ``softmax_out``, beats into and out of the spiking
        softmax; ``outputs_match``, whether the output codes equal
        :func:`golden.attention.attention_head`'s. Core and this function agree on submodule
        names (``q_codes``, ``div_c``, ``softmax``, ...); a missing one raises
        :class:`LookupError`.
    """
    core = _check_core(core)
    q, k, v = _head_codes(core, codes, density, seed)
    cfg = core.config
    steps, n = q.shape[0], cfg.tokens
    # The core is elaborated here rather than by the simulator to reach its submodules; the
    # simulator then runs that module, so the core object itself is never elaborated.
    module = core.elaborate(None)
    core._MustUse__silence = True

    def submodule(name):
        try:
            return module.submodules[name]
        except AttributeError:
            raise LookupError(f"the attention core has no submodule {name!r}; "
                              f"hwgen/energy.py is out of date with the core") from None

    ops = head_operations(core)
    names = sorted({m for op in ops.values() for m in op.memories if "." not in m})
    memories = {name: submodule(name) for name in names}
    for name, mem in memories.items():
        if not isinstance(mem, memory.Memory):
            raise LookupError(f"the attention core's submodule {name!r} is not a Memory")
    dividers = ["div_c", "div_x"] + [f"div_o{b}" for b in range(core.lanes)]
    divs = {name: submodule(name) for name in dividers}
    sm = submodule("softmax")

    probes = [core.i.valid, core.i.ready, core.o.valid, core.o.ready, core.o.payload]
    probes += [port.en for mem in memories.values() for port in mem.write_ports]
    probes += [port.en for mem in memories.values() for port in mem.read_ports]
    probes += [div.i_valid & div.en for div in divs.values()]
    probes += [sm.i.valid & sm.i.ready, sm.o.valid & sm.o.ready]

    beats = core.input_beats(q, k, v)
    got, first_accepts = [], []
    writes = dict.fromkeys(memories, 0)
    reads = dict.fromkeys(memories, 0)
    divisions = dict.fromkeys(divs, 0)
    softmax = [0, 0]
    limit = 4 * steps * (core.step_cycles() + 16) + 1000

    async def bench(ctx):
        accepted, idle = 0, 0
        ctx.set(core.o.ready, 1)
        ctx.set(core.i.payload, beats[0])
        ctx.set(core.i.valid, 1)
        for cycle in range(limit):
            # The sampled values follow the clock domain's own values.
            values = (await ctx.tick().sample(*probes))[-len(probes):]
            i_valid, i_ready, o_valid, o_ready, payload, *rest = values
            counts = iter(rest)
            for name, mem in memories.items():
                writes[name] += sum(next(counts) for _ in mem.write_ports)
            for name, mem in memories.items():
                reads[name] += sum(next(counts) for _ in mem.read_ports)
            for name in divs:
                divisions[name] += next(counts)
            softmax[0] += next(counts)
            softmax[1] += next(counts)
            if o_valid and o_ready:
                got.append([int(x) for x in payload.out])
            if i_valid and i_ready:
                if accepted % n == 0:
                    first_accepts.append(cycle)
                accepted += 1
                if accepted < len(beats):
                    ctx.set(core.i.payload, beats[accepted])
                else:
                    ctx.set(core.i.valid, 0)
            # Stop a while after the last output: nothing of the head is left in flight.
            if len(got) == len(beats):
                idle += 1
                if idle > 64:
                    return
        raise RuntimeError(f"the attention core did not finish a head of {steps} steps in "
                           f"{limit} cycles")

    sim = Simulator(module)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    out = attention_head(q, k, v, cfg).out.reshape(steps * n, cfg.head_dim).tolist()
    return {
        "steps": steps,
        "cycles_per_step": [b - a for a, b in zip(first_accepts, first_accepts[1:])],
        "writes": writes,
        "reads_enabled": reads,
        "divisions": divisions,
        "softmax_in": softmax[0],
        "softmax_out": softmax[1],
        "outputs_match": got == out,
    }


def energy_table(core, measured_cycles_per_step: float | None = None, codes=None, *,
                 density: float = 0.5, seed: int = 0) -> dict:
    """Energy of one head-step and one head of ``core``, beside the ANN, SIT and ECMT models.

    Parameters
    ----------
    core : AttentionHead
        The core; its head (:attr:`~AttentionHead.config`) is the one the models count.
    measured_cycles_per_step : number or None
        Cycles per step measured in a testbench (:func:`measure_head`); None takes
        :meth:`~AttentionHead.step_cycles`.
    codes : (q, k, v) or None
        MT codes of shape (steps, tokens, head_dim) for the SIT and ECMT models (their counts
        depend on the spikes; the core's do not). None draws random codes of fire probability
        ``density`` (0 to 1) with ``seed``, ``time_steps`` steps.

    Returns
    -------
    dict
        ``core`` (head parameters and lanes), ``cycles_per_step`` and ``cycles_source``,
        ``codes`` (source, steps, density and seed if random, spikes per neuron of each site
        over the steps), ``constants_pj`` (the per-operation energies), ``operations``
        (:func:`head_operations` with ``pj_e_ac`` and ``pj_by_width`` per step) and ``rows``:
        one dict per model with ``model``, ``basis``, ``cycles_per_step``, ``ops_per_step``,
        ``ops_per_head``, ``unit`` (what an op is), ``pj_per_step``, ``pj_per_head`` (the head's
        steps) and ``vs_ann`` (``pj_per_head`` over the ANN's). Figures that do not apply are
        None (the ANN has no steps or cycles; the models have no cycles).
    """
    core = _check_core(core)
    c = core.config
    n, d = c.tokens, c.head_dim
    if measured_cycles_per_step is None:
        cycles, source = core.step_cycles(), "step_cycles()"
    else:
        if isinstance(measured_cycles_per_step, bool) or \
                not isinstance(measured_cycles_per_step, (int, float)) or \
                not measured_cycles_per_step > 0:
            raise ValueError(f"measured_cycles_per_step must be a positive number, not "
                             f"{measured_cycles_per_step!r}")
        cycles, source = measured_cycles_per_step, "measured"
    q, k, v = _head_codes(core, codes, density, seed)
    steps = q.shape[0]
    result = attention_head(q, k, v, c)

    def rate(x):
        """Spikes per neuron over the steps."""
        return float((x != 0).sum()) / (x[0].numel())

    rates = {"q": rate(q), "k": rate(k), "v": rate(v), "s": rate(result.s_codes)}
    flops = n * n * d  # each of QKᵀ and AV

    ops = head_operations(core)
    operations = {}
    for name, op in ops.items():
        entry = op._asdict()
        entry["memories"] = list(op.memories)
        entry["pj_e_ac"] = op.add_count * E_AC_PJ if op.kind == "add" else None
        entry["pj_by_width"] = op.energy_pj()
        operations[name] = entry
    adds = sum(op.add_count for op in ops.values())
    accesses = sum(op.count for op in ops.values() if op.kind != "add")
    pj_adds = sum(op.energy_pj() for op in ops.values() if op.kind == "add")
    pj_sram = sum(op.energy_pj() for op in ops.values() if op.kind != "add")

    ann_macs = 2 * flops
    ann_pj = ann_macs * E_MAC_PJ
    sit_ops = flops * (rates["q"] + rates["k"]) + flops * (rates["s"] + rates["v"])
    sops = float(result.sops["scores"].sum() + result.sops["output"].sum())

    def row(model, basis, unit, per_head, pj_per_head, *, per_step=True, hw_cycles=False):
        return {"model": model, "basis": basis, "unit": unit,
                "cycles_per_step": cycles if hw_cycles else None,
                "ops_per_step": per_head / steps if per_step else None,
                "ops_per_head": per_head,
                "pj_per_step": pj_per_head / steps if per_step else None,
                "pj_per_head": pj_per_head, "vs_ann": pj_per_head / ann_pj}

    rows = [
        row("ANN", f"2·n²·d MACs × E_MAC ({E_MAC_PJ} pJ); softmax not counted", "MAC",
            ann_macs, ann_pj, per_step=False),
        row("SIT", f"n²·d FLOPs × spikes per neuron of both operands × E_AC ({E_AC_PJ} pJ), "
                   f"QKᵀ and AV", "AC", sit_ops, sit_ops * E_AC_PJ),
        row("ECMT", f"synaptic operations of both matmul-ECMs × E_AC ({E_AC_PJ} pJ)", "SOP",
            sops, sops * E_AC_PJ),
        row("hwgen core", f"carry chains × E_AC ({E_AC_PJ} pJ), memory not counted", "add",
            adds * steps, adds * steps * E_AC_PJ, hw_cycles=True),
        row("hwgen core", "integer adds by width (Horowitz: 0.03 pJ at 8 bits, 0.1 pJ at 32)",
            "add", adds * steps, pj_adds * steps, hw_cycles=True),
        row("hwgen core", f"SRAM accesses by word width ({SRAM_ACCESS_PJ:g} pJ per "
                          f"{SRAM_ACCESS_BITS} bits)", "access", accesses * steps,
            pj_sram * steps, hw_cycles=True),
        row("hwgen core", "integer adds by width + SRAM accesses", "add or access",
            (adds + accesses) * steps, (pj_adds + pj_sram) * steps, hw_cycles=True),
    ]
    codes_info = {"source": "random" if codes is None else "given", "steps": steps,
                  "spikes_per_neuron": rates}
    if codes is None:
        codes_info.update(density=density, seed=seed)
    return {
        "core": {"class": type(core).__name__, "lanes": core.lanes, "tokens": n, "head_dim": d,
                 "time_steps": c.time_steps, "levels": c.levels, "K": c.table.K, "N": c.N},
        "cycles_per_step": cycles,
        "cycles_source": source,
        "codes": codes_info,
        "constants_pj": {"E_MAC": E_MAC_PJ, "E_AC": E_AC_PJ,
                         "int_add_by_bits": dict(INT_ADD_PJ),
                         f"sram_{SRAM_ACCESS_BITS}_bit_access_8KB": SRAM_ACCESS_PJ},
        "operations": operations,
        "rows": rows,
    }


def _number(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def format_markdown(table: dict, title: str | None = None) -> str:
    """The result of :func:`energy_table` as markdown: the summary table, then the hardware's
    operations per step."""
    core, codes = table["core"], table["codes"]
    steps = codes["steps"]
    rates = ", ".join(f"{site} {r:.2f}" for site, r in codes["spikes_per_neuron"].items())
    source = (f"random, fire probability {codes['density']:g}, seed {codes['seed']}"
              if codes["source"] == "random" else "given")
    lines = [
        f"## {title or 'Attention head'}: n = {core['tokens']}, d = {core['head_dim']}, "
        f"T = {core['time_steps']}, {core['levels']} levels, K = {core['K']}, "
        f"N = {core['N']}, lanes = {core['lanes']}",
        "",
        f"Cycles per step: {_number(table['cycles_per_step'])} ({table['cycles_source']}). "
        f"Codes: {source}, {steps} steps; spikes per neuron over them: {rates}. "
        f"The core's counts do not depend on the codes.",
        "",
        f"| model | basis | cycles/step | ops/step | pJ/step | pJ/head ({steps} steps) "
        f"| × ANN |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table["rows"]:
        ops = "—" if r["ops_per_step"] is None else f"{_number(r['ops_per_step'])} {r['unit']}"
        if r["ops_per_step"] is None:
            ops = f"— ({_number(r['ops_per_head'])} {r['unit']}/head)"
        lines.append(f"| {r['model']} | {r['basis']} | {_number(r['cycles_per_step'])} | "
                     f"{ops} | {_number(r['pj_per_step'])} | {_number(r['pj_per_head'])} | "
                     f"{r['vs_ann']:.2f} |")
    lines += [
        "",
        "### The core's operations per step",
        "",
        "| operation | kind | events | adds/event | bits | pJ at E_AC | pJ by width | what |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, op in table["operations"].items():
        adds = op["adds"] if op["kind"] == "add" else "—"
        lines.append(f"| {name} | {op['kind']} | {_number(op['count'])} | {adds} | "
                     f"{op['bits']} | {_number(op['pj_e_ac'])} | "
                     f"{_number(op['pj_by_width'], 2)} | {op['what']} |")
    return "\n".join(lines) + "\n"
