# amaranth: UnusedElaboratable=no
"""The attention core's operation counts (checked against what the core does in the Amaranth
simulator and against hand counts), the energy table and ``python -m hwgen energy``.

(The first line lets tests build cores only to read their parameters.)
"""

import json

import pytest
import torch
from amaranth import Shape
from amaranth.lib import memory

from golden.attention import attention_head, decode_codes
from hwgen.__main__ import main
from hwgen.cores.attention import AttentionHead
from hwgen.energy import (E_AC_PJ, E_MAC_PJ, add_energy_pj, energy_table, format_markdown,
                          head_operations, measure_head, sram_energy_pj)
from sim.attention_check import small_config
from sim.softmax_check import make_test_table

def config(**overrides):
    return small_config(**{"tokens": 3, "time_steps": 3} | overrides)


CORES = {
    "n3d4": (config(), 1),
    # lanes ∤ d: the last chunk has a padding dimension.
    "n2d3_lanes2": (config(tokens=2, head_dim=3), 2),
    # ch = 4 >= max(K, q + 1) = 3: the softmax is the iterative one (SI-exp table memory).
    "n3d4_iterative": (config(table=make_test_table(3, -8.0, 0.0), N=4), 1),
}


def test_iterative_case_is_covered():
    cfg, lanes = CORES["n3d4_iterative"]
    assert AttentionHead(cfg, lanes=lanes).softmax_core().variant == "iterative"
    cfg, lanes = CORES["n3d4"]
    assert AttentionHead(cfg, lanes=lanes).softmax_core().variant == "unrolled"


@pytest.mark.parametrize("name", list(CORES))
def test_counts_match_the_simulated_core(name):
    cfg, lanes = CORES[name]
    core = AttentionHead(cfg, lanes=lanes)
    n, ch = cfg.tokens, -(-cfg.head_dim // lanes)
    ops = head_operations(core)
    got = measure_head(core, density=0.6, seed=1)
    T = got["steps"]
    assert T == cfg.time_steps and got["outputs_match"]
    assert got["cycles_per_step"] == [core.step_cycles()] * (T - 1)

    # Every memory of the core is in the model, with its word width; writes per step match.
    module = AttentionHead(cfg, lanes=lanes).elaborate(None)
    # Module keeps its named submodules privately; only a test needs all of them.
    mems = {name: sub for name, (sub, _) in module._named_submodules.items()
            if isinstance(sub, memory.Memory)}
    modelled = {m: op for op in ops.values() for m in op.memories}
    assert set(mems) == {m for m in modelled if "." not in m}
    for mem_name, mem in mems.items():
        assert modelled[mem_name].bits == Shape.cast(mem.shape).width, mem_name
    for op_name, op in ops.items():
        if op.kind == "write" and "." not in op.memories[0]:
            measured = sum(got["writes"][m] for m in op.memories)
            assert measured == op.count * T, op_name
    # The softmax's memories: widths, and one write per beat into each row buffer.
    sm = core.softmax_core()
    sm_module = sm.elaborate(None)
    assert ops["write.x_buffer"].bits == Shape.cast(sm_module.submodules.x_buffer.shape).width
    assert ops["write.e_buffer"].bits == Shape.cast(sm_module.submodules.e_buffer.shape).width
    assert got["softmax_in"] == got["softmax_out"] == ops["write.x_buffer"].count * T
    assert ops["write.e_buffer"].count == ops["si_exp_clamp"].count == n * n
    assert ops["si_exp_steps"].count == n * n * sm.K
    assert ops["si_norm_steps"].count == n * n * (sm.q + 2)
    if sm.variant == "iterative":
        rows = sm_module.submodules.exp.elaborate(None).submodules.rows
        assert ops["read.si_exp_rows"].bits == Shape.cast(rows.shape).width
    else:
        assert "read.si_exp_rows" not in ops

    # Divisions: one per score into each score divider, one per output value per lane.
    assert got["divisions"]["div_c"] == got["divisions"]["div_x"] == n * n * T
    lane_divisions = sum(v for k, v in got["divisions"].items() if k.startswith("div_o"))
    assert lane_divisions == n * ch * lanes * T
    # Restoring steps per division: one per cycle's step, over the divider's latency.
    sc, sx, so = (per_cycle * latency for per_cycle, latency
                  in zip(core.divider_steps, core.divider_latencies))
    assert ops["score_div"].count * T == got["divisions"]["div_c"] * sc
    assert ops["scale_div"].count * T == got["divisions"]["div_x"] * sx
    assert ops["out_div"].count * T == lane_divisions * so
    # MT decisions: one membrane written back per decision.
    assert ops["mt_s"].count * T == got["writes"]["v_s"]
    assert ops["mt_out"].count * T == sum(got["writes"][m] for m in ops["write.v_out"].memories)
    # The MACs: every stored (token, dimension) value of SK and SV meets each of the n rows,
    # in two products.
    sk = sum(got["writes"][m] for m in ops["write.sk"].memories) // T
    sv = sum(got["writes"][m] for m in ops["write.sv"].memories) // T
    assert ops["score_mac"].count == 2 * n * sk and ops["out_mac"].count == 2 * n * sv
    assert ops["score_sums"].count == 2 * n * sk and ops["out_sums"].count == n * sv
    # The FPGA's read ports read on more cycles than the datapath uses.
    for op in ops.values():
        if op.kind == "read" and "." not in op.memories[0]:
            enabled = sum(got["reads_enabled"][m] for m in op.memories)
            assert enabled >= op.count * T


def test_counts_by_hand():
    """n = 2, d = 3, lanes = 2: ch = 2 chunks, 4 dimension slots (one padding)."""
    cfg, lanes = CORES["n2d3_lanes2"]
    ops = head_operations(AttentionHead(cfg, lanes=lanes))
    counts = {name: op.count for name, op in ops.items()}
    # 2 products × 4 (i, j) pairs × 2 chunks × 2 lanes.
    assert counts["score_mac"] == counts["out_mac"] == counts["score_sums"] == 32
    assert counts["out_sums"] == 16
    assert counts["mt_s"] == counts["prob_sum"] == counts["softmax_max"] == 4
    assert counts["mt_out"] == 8  # 2 tokens × 4 dimension slots
    assert counts["si_exp_steps"] == 4 * 12 and counts["si_norm_steps"] == 4 * 10
    assert counts["write.q_codes"] == 8 and counts["read.q_codes"] == 16  # per (i, j, chunk, lane)
    assert counts["read.prob_rows"] == 8 and counts["write.prob_rows"] == 4
    assert ops["write.q_codes"].memories == ("q_codes0", "q_codes1")
    # T = 3: t counts to 3 in a 3-bit register, so t·c is 2 adds.
    assert ops["prob_times_t"].adds == 2


def test_score_constant_adds_are_its_signed_digits():
    # The core multiplies by M with an add per nonzero digit of its non-adjacent form after
    # the top one, then adds the rounding term. M = 45875's lowest digit is negative.
    cores = [AttentionHead(head=head) for head in ("default", "digits")]
    for core in cores + [AttentionHead(small_config(score_scale=0.35))]:
        M, _ = core.config.score_constant
        digits = core.score_constant_digits
        assert sum(sign << shift for sign, shift in digits) == M
        shifts = [shift for _, shift in digits]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))  # non-adjacent
        assert head_operations(core)["score_scale"].adds == len(digits)


def test_signed_digits_are_the_non_adjacent_form():
    # The NAF has the fewest nonzero digits: as many as the set bits of value XOR 3·value.
    from hwgen.cores.attention import _signed_digits
    for m in range(1, 5000):
        digits = _signed_digits(m)
        assert sum(sign << shift for sign, shift in digits) == m
        assert len(digits) == bin(m ^ (3 * m)).count("1")


def test_energy_constants():
    assert (add_energy_pj(8), add_energy_pj(32)) == (0.03, 0.1)
    assert add_energy_pj(20) == pytest.approx(0.065)
    assert add_energy_pj(4) == pytest.approx(0.015) and add_energy_pj(64) == pytest.approx(0.2)
    assert sram_energy_pj(64) == 10.0 and sram_energy_pj(16) == 2.5
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)
    with pytest.raises(ValueError, match=r"^bits must be an integer greater than or equal to "
                                         r"1, not 0$"):
        add_energy_pj(0)


def test_energy_table_models():
    cfg, lanes = CORES["n3d4"]
    core = AttentionHead(cfg, lanes=lanes)
    n, d, T = cfg.tokens, cfg.head_dim, cfg.time_steps
    shape = (T, n, d)
    zero = torch.zeros(shape, dtype=torch.int64)
    v = torch.full(shape, 2)
    table = energy_table(core, codes=(zero, zero, v))
    rows = {(r["model"], r["basis"].split(" (")[0]): r for r in table["rows"]}
    ann = rows["ANN", "2·n²·d MACs × E_MAC"]
    assert ann["pj_per_head"] == 2 * n * n * d * 4.6 and ann["vs_ann"] == 1.0
    assert ann["pj_per_step"] is None and ann["cycles_per_step"] is None
    # No Q or K spikes: the score matmul costs nothing; AV costs the probability spikes.
    s = attention_head(zero, zero, v, cfg).s_codes
    s_rate = float((s != 0).sum()) / (n * n)
    sit = rows["SIT", "n²·d FLOPs × spikes per neuron of both operands × E_AC"]
    assert sit["ops_per_head"] == pytest.approx(n * n * d * (s_rate + T))  # v fires always
    assert sit["pj_per_head"] == pytest.approx(sit["ops_per_head"] * 0.9)
    ecmt = rows["ECMT", "synaptic operations of both matmul-ECMs × E_AC"]
    # ECMT's rule with V and its running sums nonzero everywhere: each probability spike and
    # each nonzero running probability meet d nonzero V entries, the spike twice (A_t B_t and
    # A_t SB_t); the scores cost nothing.
    running = torch.cumsum(decode_codes(s, cfg.s_exponents), dim=0)
    assert ecmt["ops_per_head"] == d * (2 * (s != 0).sum() + (running != 0).sum())
    assert ecmt["pj_per_step"] == pytest.approx(ecmt["pj_per_head"] / T)
    assert table["codes"] == {"source": "given", "steps": T, "spikes_per_neuron": {
        "q": 0.0, "k": 0.0, "v": float(T), "s": s_rate}}
    # The core: the same work whatever the codes; cycles from step_cycles().
    ops = head_operations(core)
    adds = sum(op.count * op.adds for op in ops.values() if op.kind == "add")
    hw = rows["hwgen core", "carry chains × E_AC"]
    assert hw["ops_per_step"] == adds and hw["pj_per_step"] == pytest.approx(adds * 0.9)
    assert hw["pj_per_head"] == pytest.approx(T * adds * 0.9)
    assert hw["cycles_per_step"] == core.step_cycles() and table["cycles_source"] == "step_cycles()"
    total = rows["hwgen core", "integer adds by width + SRAM accesses"]
    assert total["pj_per_step"] == pytest.approx(sum(op.energy_pj() for op in ops.values()))
    random = energy_table(core, 123.0, density=0.3, seed=2)
    assert random["cycles_per_step"] == 123.0 and random["cycles_source"] == "measured"
    assert [r["ops_per_step"] for r in random["rows"][3:]] == [r["ops_per_step"]
                                                                for r in table["rows"][3:]]
    assert random["codes"]["density"] == 0.3 and random["codes"]["source"] == "random"
    text = format_markdown(table)
    assert text.count("\n| hwgen core |") == 4 and "| score_mac | add |" in text


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(codes=(torch.zeros(2, 3, 4, dtype=torch.int64),) * 2), ValueError,
     r"^codes must be a \(q, k, v\) triple"),
    (dict(codes=(torch.zeros(4, 3, 4, dtype=torch.int64),) * 3), ValueError,
     r"^codes q must have shape \(steps, tokens=3, head_dim=4\) with 1 to 3 steps, "
     r"not \(4, 3, 4\)$"),
    (dict(codes=(torch.full((1, 3, 4), 3),) * 3), ValueError, r"^q holds 3, which is not"),
    (dict(density=1.5), ValueError, r"^density must be a number from 0 to 1, not 1.5$"),
    (dict(measured_cycles_per_step=0), ValueError,
     r"^measured_cycles_per_step must be a positive number, not 0$"),
])
def test_energy_table_rejects_bad_arguments(kwargs, error, message):
    cfg, lanes = CORES["n3d4"]
    with pytest.raises(error, match=message):
        energy_table(AttentionHead(cfg, lanes=lanes), **kwargs)


def test_rejects_other_cores():
    with pytest.raises(TypeError, match=r"^core must be an AttentionHead, not str$"):
        head_operations("attention")


def test_cli(tmp_path, capsys):
    out = tmp_path / "energy.json"
    assert main(["energy", "attention", "--param", "lanes=2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("## attention lanes=2: n = 4, d = 4, T = 4, 4 levels")
    table = json.loads(out.read_text())
    core = AttentionHead(lanes=2)
    assert table["core"]["lanes"] == 2 and table["cycles_per_step"] == core.step_cycles()
    assert [r["model"] for r in table["rows"]] == ["ANN", "SIT", "ECMT"] + ["hwgen core"] * 4
    assert table["operations"]["score_mac"]["count"] == head_operations(core)["score_mac"].count
    assert main(["energy", "attention", "--param", "head=digits"]) == 0
    assert "n = 16, d = 16, T = 8, 8 levels" in capsys.readouterr().out
    assert main(["energy", "mt"]) == 2
    assert "error: energy: core must be one of attention" in capsys.readouterr().err


def test_cli_measure(tmp_path, capsys):
    out = tmp_path / "energy.json"
    assert main(["energy", "attention", "--measure", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["cycles_source"] == "measured"
    assert table["cycles_per_step"] == AttentionHead().step_cycles()
    assert table["measurement"]["outputs_match"] is True
    assert "(measured)" in capsys.readouterr().out
