"""ANN → SNN conversion (golden/convert.py): telescoping, calibration, attention, BERT, errors."""

import dataclasses

import pytest
import torch
from torch import nn

from golden.convert import ConversionConfig, convert
from golden.energy import energy_report
from golden.mt_neuron import mt_decode, mt_neuron_float
from golden.si_exp import shipped_table


@pytest.fixture(autouse=True)
def _inference_only():
    with torch.no_grad():
        yield


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4)).double()


def test_mt_only_mlp_telescopes_to_t_times_the_linear_of_the_mean():
    """One MT site feeding a Linear: cumulative output = t·f(mean x) − W·v_t exactly, where v_t
    is the MT membrane (the residual the neuron has not emitted yet)."""
    torch.manual_seed(1)
    lin = nn.Linear(6, 4).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    snn = convert(lin, [x])
    T = 12
    y = snn(x, T=T)
    lp, ln = snn.sites["0:in"].lambdas
    res = mt_neuron_float(x.expand(T, *x.shape), lp, ln, snn.config.levels)
    for t in range(1, T + 1):
        residual = t * x - torch.cumsum(mt_decode(res.codes, lp, ln), 0)[t - 1]
        expect = t * lin(x) - residual @ lin.weight.T
        assert torch.allclose(y[t - 1], expect, atol=1e-9)


def test_mt_mlp_converges_to_the_ann():
    mlp = _mlp()
    x = torch.randn(64, 6, dtype=torch.float64)
    snn = convert(mlp, [x])
    y = snn(x, T=64)
    ann = mlp(x)
    err = [float((y[t - 1] / t - ann).abs().mean()) for t in (2, 8, 64)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.02 * float(ann.abs().mean())
    assert torch.allclose(snn.ann(x), ann)


def test_integer_mlp_matches_the_fixed_point_definition():
    """Integer mode: MT codes of the activation integers, shifts and adds, rounding half up."""
    from golden.attention import decode_codes, mt_site
    mlp = _mlp(3)
    x = torch.rand(8, 6, dtype=torch.float64) * 2 - 1
    snn = convert(mlp, [x], integer=True)
    T = 5
    y = snn(x, T=T)
    cfg = snn.config
    h = cfg.act_format.quantise(x).expand(T, 8, 6)
    for i, lin in enumerate(mlp):
        site = snn.sites[f"{i}:in"]
        e = site.exponents
        vals = decode_codes(mt_site(h, -cfg.act_frac, e, cfg.levels), e)
        w = torch.floor(lin.weight.detach() * 2 ** cfg.weight_frac + 0.5).long()
        b = torch.floor(lin.bias.detach() * 2 ** cfg.act_frac + 0.5).long()
        shift = cfg.weight_frac - min(e) - cfg.act_frac
        acc = vals @ w.T
        h = ((acc + (1 << (shift - 1))) >> shift if shift > 0 else acc << -shift) + b
    assert torch.equal(y, torch.cumsum(h, 0))
    assert y.dtype == torch.int64
    assert torch.allclose(snn.to_real(y[-1]) / T, mlp(x), atol=0.15)


def test_calibration_is_the_mean_of_per_batch_percentiles_and_deterministic():
    mlp = _mlp()
    batches = [torch.randn(50, 6, dtype=torch.float64) for _ in range(3)]
    a = convert(mlp, batches)
    b = convert(mlp, batches)
    assert {n: s.lambdas for n, s in a.sites.items()} == {n: s.lambdas for n, s in b.sites.items()}
    flat = [x.reshape(-1) for x in batches]
    lp = sum(float(f.kthvalue(int(f.numel() * 0.99)).values) for f in flat) / 3
    ln = sum(-float(f.kthvalue(int(f.numel() * 0.01)).values) for f in flat) / 3
    assert a.sites["0:in"].lambdas == pytest.approx((lp, ln))
    c = convert(mlp, batches, lambdas={"0:in": (0.5, 0.25)}, percentiles=(0.9, 0.1))
    assert c.sites["0:in"].lambdas == (0.5, 0.25)
    assert c.sites["1:in"].lambdas != a.sites["1:in"].lambdas
    d = convert(mlp, [], lambdas_from=a)
    assert {n: s.lambdas for n, s in d.sites.items()} == {n: s.lambdas for n, s in a.sites.items()}
    e = convert(mlp, [], lambdas_from=a, lambdas={"0:in": (0.5, 0.25)})  # fixed λ still win
    assert e.sites["0:in"].lambdas == (0.5, 0.25)
    assert e.sites["1:in"].lambdas == a.sites["1:in"].lambdas


def _block(norm_first=True, batch_first=True):
    torch.manual_seed(4)
    return nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu",
                                      batch_first=batch_first, norm_first=norm_first).eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_attention_block_keeps_the_ann_function_and_converges(norm_first):
    block = _block(norm_first)
    x = torch.randn(8, 5, 16)
    with torch.no_grad():
        ann = block(x)
    snn = convert(block, [x])
    kinds = sorted({s.kind for s in snn.sites.values()})
    assert kinds == ["fc1", "fc2", "fc_out", "fc_qkv", "k", "q", "s", "v"]
    assert snn.sites["0.self_attn:s"].lambdas == (0.0125, 0.0125)  # ECMT's fixed value
    assert torch.allclose(snn.ann(x), ann, atol=1e-5)
    y = snn(x, T=48)
    err = [float((y[t - 1] / t - ann).abs().mean()) for t in (2, 8, 48)]
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.1 * float(ann.abs().mean())


class _SeqFirstAttention(nn.Module):
    """A batch-first model around a seq-first MultiheadAttention."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.mha = nn.MultiheadAttention(16, 2)

    def forward(self, x):
        s = x.transpose(0, 1)
        return self.mha(s, s, s, need_weights=False)[0].transpose(0, 1)


def test_seq_first_multihead_attention_and_padding_masks():
    model = _SeqFirstAttention().eval()
    x = torch.randn(3, 5, 16)
    snn = convert(model, [x])
    ann = model(x)
    assert torch.allclose(snn.ann(x), ann, atol=1e-5)
    y = snn(x, T=48)
    assert float((y[-1] / 48 - ann).abs().mean()) < 0.1 * float(ann.abs().mean())

    block = _block()
    padding = torch.tensor([[False] * 4 + [True]] * 3)
    snn_b = convert(block, [x])
    ann_masked = block(x, src_key_padding_mask=padding)
    y = snn_b(x, T=32, src_key_padding_mask=padding.repeat(32, 1))
    assert float((y[-1] / 32 - ann_masked).abs().mean()) < 0.1 * float(ann_masked.abs().mean())


@pytest.mark.parametrize("softmax", ["exact", "spiking"])
@pytest.mark.parametrize("softmax_input", ["max", "sigmoid"])
def test_a_padded_token_changes_nothing_in_any_softmax_setting(softmax, softmax_input):
    block = _block()
    x = torch.randn(3, 5, 16)
    padding = torch.tensor([[False] * 4 + [True]] * 3)
    other = x.clone()
    other[:, 4] = 3 * torch.randn(3, 16)
    snn = convert(block, [x], softmax=softmax, softmax_input=softmax_input, K=16)
    y, y_other = (snn(v, T=6, src_key_padding_mask=padding.repeat(6, 1)) for v in (x, other))
    assert torch.equal(y[:, :, :4], y_other[:, :, :4])
    assert not torch.equal(y[:, :, 4], y_other[:, :, 4])
    if softmax_input == "sigmoid":  # a bias has no counterpart after the sigmoid
        bias = torch.zeros(5, 5).masked_fill(torch.eye(5, dtype=torch.bool), 0.5)
        with pytest.raises(NotImplementedError, match="the attention mask holds 0.5; with "
                                                      "softmax_input='sigmoid'"):
            snn(x, T=2, src_mask=bias)


def test_bert_style_masks_in_integer_mode_are_refused_by_name():
    class SelfAttention(nn.Module):  # the attribute names the converter looks for
        def __init__(self):
            super().__init__()
            self.num_attention_heads, self.attention_head_size, self.is_causal = 2, 4, True
            self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = SelfAttention()

        def forward(self, x):
            return self.attn(x)[0]

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    snn = convert(Model().eval(), [x], integer=True)
    with pytest.raises(NotImplementedError, match="attn: attention masks are supported in real "
                                                  "mode only"):
        snn(x, T=2)  # is_causal: the converter makes the causal mask


def test_spiking_softmax_block_integer_mode_runs_the_golden_head():
    block = _block()
    x = torch.randn(4, 5, 16)
    calls = []
    snn = convert(block, [x], softmax="spiking", integer=True)
    from golden.attention import attention_head

    def spy(q, k, v, config):
        calls.append(config)
        return attention_head(q, k, v, config)

    snn.head_function = spy
    y = snn(x, T=16)
    assert len(calls) == 1 and calls[0].tokens == 5 and calls[0].head_dim == 8
    assert calls[0].softmax == "spiking" and calls[0].table.K == 12
    ann = block(x).detach()
    assert float((snn.to_real(y[-1]) / 16 - ann).abs().mean()) < 0.15 * float(ann.abs().mean())


def test_bert_self_attention_converts():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=16, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(0, 50, (6, 10))
    mask = torch.ones(6, 10, dtype=torch.int64)
    mask[:, 8:] = 0
    with torch.no_grad():
        ann = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    snn = convert(bert, [(ids,)], softmax="spiking")
    names = list(snn.sites)
    assert "encoder.layer.0.attention.self:s" in names
    assert "encoder.layer.0.attention.output.dense:in" not in names  # fed by the head's MT
    assert torch.allclose(snn.ann(input_ids=ids, attention_mask=mask).last_hidden_state, ann,
                          atol=1e-4)
    y = snn(ids, T=32, attention_mask=mask.repeat(32, 1))
    err = [float((y[t - 1] / t - ann).abs().mean()) for t in (2, 32)]
    assert err[1] < err[0]
    assert err[1] < 0.15 * float(ann.abs().mean())
    with pytest.raises(NotImplementedError, match="nn.Embedding"):
        convert(bert, [(ids,)], integer=True)


def test_energy_counts_follow_the_definitions():
    mlp = _mlp()
    x = torch.randn(10, 6, dtype=torch.float64)
    snn = convert(mlp, [x])
    stats = snn.record_stats()
    snn(x, T=4)
    r = energy_report(stats)
    s0, s1 = stats.sites["0:in"], stats.sites["1:in"]
    assert s0["neurons"] == 6 and s1["neurons"] == 5
    sops = (torch.cumsum(s0["spikes"], 0) * 5 + torch.cumsum(s1["spikes"], 0) * 4) / 10
    assert r["sops"] == pytest.approx(sops.tolist())
    assert r["ann_flops"] == 6 * 5 + 5 * 4
    assert r["energy_ratio_ecmt"] == pytest.approx((sops * 0.9 / (50 * 4.6)).tolist())
    rate0 = torch.cumsum(s0["spikes"], 0) / 60
    rate1 = torch.cumsum(s1["spikes"], 0) / 50
    assert r["energy_ratio"] == pytest.approx(((30 * rate0 + 20 * rate1) * 0.9 / 230).tolist())
    assert all(a < b for a, b in zip(r["energy_ratio"], r["energy_ratio"][1:]))


def test_a_run_that_fails_part_way_leaves_the_counts_as_they_were():
    class Switchable(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.as_tuple = _mlp(), False

        def forward(self, x):
            y = self.body(x)
            return (y,) if self.as_tuple else y

    x = torch.randn(10, 6, dtype=torch.float64)
    snn = convert(Switchable(), [x])
    stats = snn.record_stats()
    snn(x, T=4)
    before = energy_report(stats)
    snn.model.as_tuple = True  # every site has counted when the output is refused
    with pytest.raises(TypeError, match="the model returned tuple"):
        snn(x, T=4)
    assert energy_report(stats) == before and stats.samples == 10
    snn.model.as_tuple = False
    snn(x, T=4)  # the same images again: the same figures per sample
    assert stats.samples == 20
    assert energy_report(stats)["energy_ratio"] == pytest.approx(before["energy_ratio"])


def test_bad_conversion_parameters_are_named():
    mlp = _mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="softmax must be one of exact, spiking, not 'fast'"):
        convert(mlp, [x], softmax="fast")
    with pytest.raises(ValueError, match="percentiles"):
        ConversionConfig(percentiles=(0.01, 0.99))
    with pytest.raises(ValueError, match="levels"):
        ConversionConfig(levels=0)
    with pytest.raises(ValueError, match="calibration is empty"):
        convert(mlp, [])
    with pytest.raises(ValueError, match=r"lambdas\['s'\]"):
        ConversionConfig(lambdas={"s": (0.0, 1.0)})
    snn = convert(mlp, [x])
    with pytest.raises(ValueError, match="T must be"):
        snn(x, T=0)
    big = nn.Linear(6, 2).double()
    with torch.no_grad():
        big.weight.fill_(100.0)
    with pytest.raises(ValueError, match="0.weight"):
        convert(big, [x], integer=True)(x, T=1)


@pytest.mark.parametrize("options, error", [
    ({"rounding": "up"}, "rounding must be one of floor, round, not 'up'"),
    ({"N": 100}, "N must be a power of two"),
    ({"softmax": "spiking", "K": 7}, r"no shipped SI-exp table for K=7 on \[-8, 0\]"),
    ({"table": "k12.json"}, "table must be an SIExpTable, not str"),
    ({"table": dataclasses.replace(shipped_table(12, -8, 0), info={"target": "silu"})},
     "the spiking softmax needs a table of exp; this one approximates silu"),
    ({"act_width": 0}, "act_width must be an integer from 2 to 62, not 0"),
    ({"weight_width": 64}, "weight_width must be an integer from 2 to 62, not 64"),
    ({"analog": "0"}, "analog must be a tuple of Linear module names, not '0'"),
    ({"analog": None}, "analog must be a tuple of Linear module names, not None"),
    ({"lambdas": {"s": 0.0125}}, r"lambdas\['s'\] must be two positive numbers, not 0.0125"),
    ({"lambdas": {"fc2": (float("inf"), 1.0)}}, r"lambdas\['fc2'\] must be two positive"),
])
def test_bad_config_fields_are_named_when_the_config_is_made(options, error):
    with pytest.raises((ValueError, TypeError), match=error):
        ConversionConfig(**options)


def test_names_that_match_nothing_in_the_model_are_refused():
    """A misspelt site or layer name would otherwise be ignored without a word."""
    mlp = _mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lambdas key 'fc3' is neither a site kind .* nor an MT "
                                         r"site of this model \(0:in, 1:in\)"):
        convert(mlp, [x], lambdas={"s": (0.0125, 0.0125), "fc3": (1.0, 1.0)})
    with pytest.raises(ValueError, match="analog lists '2', which is not a Linear of this model; "
                                         "its Linears are 0, 1"):
        convert(mlp, [x], analog=("2",))
    assert convert(mlp, [x], lambdas={"1:in": (0.5, 0.5), "fc2": (1.0, 1.0)}).sites[
        "1:in"].lambdas == (0.5, 0.5)
    assert list(convert(mlp, [x], analog=("0",)).sites) == ["1:in"]
    with pytest.raises(TypeError, match=r"calibration must be an iterable of input batches, not a "
                                        r"tensor \(pass \[x\]"):
        convert(mlp, x)


@pytest.mark.parametrize("integer", [False, True])
def test_inputs_that_are_not_finite_or_do_not_fit_are_refused(integer):
    mlp = _mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    snn = convert(mlp, [x], integer=integer)
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="input 0 has NaN or infinite values"):
        snn(bad, T=2)
    if integer:  # s32.10 ends at 2**21; saturating the input would hide the overflow
        with pytest.raises(ValueError, match=r"input 0 \(quantised to s32.10\) has values"):
            snn(x + 2.0 ** 21, T=2)


def _relative_error(model, x, T=128, calibration=None, **options):
    """Mean |SNN mean output − ANN| over mean |ANN| after T steps."""
    model = model.eval()
    ann = model(x)
    y = convert(model, calibration or [x], **options)(x, T=T)
    return float((y[-1] / T - ann).abs().mean() / ann.abs().mean())


class _SeqFirstEncoder(nn.Module):
    """A batch-first model around seq-first encoder layers (PyTorch's default layout)."""

    def __init__(self, layers=1):
        super().__init__()
        torch.manual_seed(4)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x.transpose(0, 1)).transpose(0, 1)


@pytest.mark.parametrize("layers", [1, 2])
def test_seq_first_encoder_layers_convert_like_batch_first_ones(layers):
    model = _SeqFirstEncoder(layers).eval()
    x = torch.randn(8, 16, 16)
    assert _relative_error(model, x, T=64) < 0.05
    bare = model.encoder.layers[0]
    with pytest.raises(NotImplementedError, match="batch_first=False: wrap it"):
        convert(bare, [x.transpose(0, 1)])
    with pytest.raises(NotImplementedError, match="bare nn.MultiheadAttention"):
        convert(bare.self_attn, [x])


def test_a_tensor_passed_twice_stays_one_tensor():
    """Self-attention is recognised by identity (query is key is value)."""

    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, q, k, v):
            return self.mha(q, k, v, need_weights=False)[0]

    model = QKV().eval()
    x = torch.randn(4, 5, 16)
    snn = convert(model, [(x, x, x)])
    y = snn(x, x, x, T=48)
    ann = model(x, x, x)
    assert float((y[-1] / 48 - ann).abs().mean()) < 0.1 * float(ann.abs().mean())
    with pytest.raises(NotImplementedError, match="only self-attention"):
        snn(x, x.clone(), x, T=2)


ELEMENTWISE = [nn.LeakyReLU(0.1), nn.ELU(), nn.Softplus(), nn.Hardtanh(-0.5, 0.5), nn.ReLU6(),
               nn.Mish(), nn.PReLU(), nn.Hardswish(), nn.SELU(), nn.Softsign()]
NORMS = [nn.RMSNorm(32), nn.GroupNorm(4, 32), nn.BatchNorm1d(32), nn.LayerNorm(32)]


@pytest.mark.parametrize("module", ELEMENTWISE + NORMS, ids=lambda m: type(m).__name__)
def test_activations_and_norms_are_converted_by_ecm(module):
    """Run per step on spike values these would compute another function (errors of 0.1 to 0.3
    before they were converted); by ECM they converge like GELU."""
    torch.manual_seed(5)
    mlp = nn.Sequential(nn.Linear(8, 32), module, nn.Linear(32, 4))
    if isinstance(module, nn.BatchNorm1d):
        mlp.train()(torch.randn(64, 8) * 2 + 1)  # running statistics that are not the identity
    x = torch.randn(64, 8)
    assert _relative_error(mlp, x, T=128) < 0.03
    y = convert(mlp.eval(), [x], integer=True)(x, T=8)  # float64 on the exact running mean
    assert y.dtype == torch.int64


class _Scale(nn.Module):
    def forward(self, x):
        return 2 * x


class _ScaleDeclared(_Scale):
    def forward_integer(self, x, act_frac):
        return 2 * x


class _ScaledLayer(nn.TransformerEncoderLayer):
    def forward(self, src, *args, **kwargs):
        return src + 0.1 * (super().forward(src, *args, **kwargs) - src)


@pytest.mark.parametrize("module, integer, error", [
    (nn.Sequential(nn.Linear(8, 8), nn.MaxPool1d(2)), False,
     r"1 \(MaxPool1d\) is not a module the converter knows"),
    (nn.Sequential(nn.Linear(8, 8), _Scale()), False,
     r"1 \(_Scale\) is not a module .* forward_integer\(x, act_frac\)"),
    (nn.Sequential(nn.Linear(8, 8), nn.Softmax(dim=0)), False,
     r"1 \(nn.Softmax\) works along dim=0, which may be the batch dimension"),
    (nn.Sequential(nn.Linear(8, 8), nn.Unflatten(1, (2, 4)), nn.Softmax(dim=-3)), False,
     r"^2 \(nn.Softmax\) works along dim=-3, the batch dimension of its 3-D input, which holds "
     r"the T steps"),
    (nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8, track_running_stats=False)), False,
     r"1 \(BatchNorm1d\) is not a module the converter knows"),
    (nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv1d(1, 2, 3)), True,
     r"integer mode has no fixed-point form of 1 \(nn.Conv1d\)"),
    (nn.Sequential(nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)), False,
     "0 is an nn.TransformerDecoderLayer, which the converter does not handle"),
    (nn.Sequential(_ScaledLayer(8, 2, 16, batch_first=True)), False,
     r"0 \(_ScaledLayer\) overrides the forward of TransformerEncoderLayer"),
])
def test_modules_the_converter_does_not_know_are_refused(module, integer, error):
    with pytest.raises(NotImplementedError, match=error):
        convert(module, [torch.randn(4, 8)], integer=integer)


def test_a_module_with_forward_integer_runs_as_declared():
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(8, 8), _ScaleDeclared(), nn.Linear(8, 2))
    x = torch.randn(16, 8)
    assert _relative_error(mlp, x, T=64) < 0.03
    assert _relative_error(nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.5), nn.Flatten()), x) < 0.03


def _bert_config(**options):
    transformers = pytest.importorskip("transformers")
    return transformers.BertConfig(**{
        "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, **options})


def _bert_error(T=64, **options):
    import transformers
    torch.manual_seed(0)
    bert = transformers.BertModel(_bert_config(initializer_range=0.3, **options),
                                  add_pooling_layer=False).eval()
    ids = torch.randint(0, 50, (6, 10))
    ann = bert(input_ids=ids).last_hidden_state
    y = convert(bert, [(ids,)])(ids, T=T)
    return float((y[-1] / T - ann).abs().mean() / ann.abs().mean())


@pytest.mark.parametrize("act", ["silu", "gelu_pytorch_tanh", "quick_gelu", "leaky_relu"])
def test_hugging_face_activations_are_converted(act):
    assert _bert_error(hidden_act=act) < 0.05  # 0.6 to 0.75 when they ran per step


def test_bert_decoder_stays_causal_and_bias_free_projections_convert():
    import transformers
    torch.manual_seed(0)
    bert = transformers.BertModel(_bert_config(is_decoder=True),
                                  add_pooling_layer=False).eval()
    for name in ("query", "key", "value"):
        getattr(bert.encoder.layer[0].attention.self, name).bias = None
    ids = torch.randint(0, 50, (6, 10))
    other = ids.clone()
    other[:, -1] = (other[:, -1] + 1) % 50
    snn = convert(bert, [(ids,)])
    first = snn(ids, T=16)[-1, :, 0]
    assert torch.equal(first, snn(other, T=16)[-1, :, 0])  # position 0 sees only itself
    ann = bert(input_ids=ids).last_hidden_state
    y = snn(ids, T=64)
    assert float((y[-1] / 64 - ann).abs().mean() / ann.abs().mean()) < 0.05


def test_attention_the_converter_does_not_know_is_refused():
    import transformers
    torch.manual_seed(0)
    cross = transformers.BertModel(_bert_config(is_decoder=True, add_cross_attention=True))
    with pytest.raises(NotImplementedError, match=r"encoder.layer.0.crossattention.self "
                                                  r"\(BertCrossAttention\)"):
        convert(cross, [(torch.randint(0, 50, (2, 10)),)])
    distil = transformers.DistilBertModel(transformers.DistilBertConfig(
        vocab_size=50, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=16))
    with pytest.raises(NotImplementedError, match=r"transformer.layer.0.attention "
                                                  r"\(DistilBertSelfAttention\): attention in a "
                                                  r"form the converter does not know"):
        convert(distil, [(torch.randint(0, 50, (2, 10)),)])


@pytest.mark.parametrize("softmax_input", ["max", "sigmoid"])
def test_exact_softmax_is_one_function_in_real_and_integer_mode(softmax_input):
    """With the sigmoid mapping, real mode used to compute the plain softmax."""
    block = _block()
    x = torch.randn(4, 5, 16)
    real = convert(block, [x], softmax_input=softmax_input)(x, T=32)[-1]
    snn = convert(block, [x], softmax_input=softmax_input, integer=True)
    integer = snn.to_real(snn(x, T=32)[-1])
    assert float((real - integer).abs().mean()) < 0.05 * float(real.abs().mean())


def test_an_explicit_table_sets_k_and_must_fit_the_input_mapping():
    t16 = shipped_table(16, -8, 0)
    assert ConversionConfig(softmax="spiking", table=t16).K == 16
    assert ConversionConfig().K == 12
    with pytest.raises(ValueError, match="K = 12 differs from K = 16 of the given table"):
        ConversionConfig(table=t16, K=12)
    with pytest.raises(ValueError, match="'max' needs a table whose range ends at 0"):
        ConversionConfig(softmax="spiking", table=shipped_table(12, -1, 1))
    with pytest.raises(ValueError, match=r"'sigmoid' needs a table whose range covers \[0, 1\]"):
        ConversionConfig(softmax="spiking", softmax_input="sigmoid", table=t16)
    block = _block()
    x = torch.randn(2, 5, 16)
    assert convert(block, [x], ConversionConfig(softmax="spiking"), table=t16).config.K == 16


def test_calibration_refuses_non_finite_batches_and_takes_keyword_batches():
    mlp = _mlp()
    x = torch.randn(8, 6, dtype=torch.float64)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="calibration batch 1, input 0, has NaN or infinite"):
        convert(mlp, [x, bad])
    with pytest.raises(ValueError, match="calibration batch 0, input 'input', has NaN"):
        convert(mlp, [{"input": bad}])
    a, b = convert(mlp, [x]), convert(mlp, [{"input": x}])
    assert {n: s.lambdas for n, s in a.sites.items()} == {n: s.lambdas for n, s in b.sites.items()}


def test_statistics_refuse_runs_that_do_not_add_up():
    mlp = _mlp()
    x = torch.randn(8, 6, dtype=torch.float64)
    snn = convert(mlp, [x])
    snn.record_stats()
    snn(x, T=4)
    with pytest.raises(ValueError, match="recorded at T = 4, not 8"):
        snn(x, T=8)
    block = _block()
    tokens = torch.randn(2, 5, 16)
    snn = convert(block, [tokens])
    snn.record_stats()
    snn(tokens, T=2)
    with pytest.raises(ValueError, match="per sample is .* in this run and .* in the recorded"):
        snn(torch.randn(2, 7, 16), T=2)
    analog = convert(mlp, [x], analog=("0", "1"))
    stats = analog.record_stats()
    analog(x, T=2)
    with pytest.raises(ValueError, match="no MT site"):
        energy_report(stats)


def test_calls_the_converted_model_cannot_take_are_explained():
    block = _block()
    x = torch.randn(3, 5, 16)
    snn = convert(block, [x])
    with pytest.raises(TypeError, match="pass the model's input tensors positionally"):
        snn(src=x, T=2)
    with pytest.raises(ValueError, match=r"key_padding_mask has 3 rows and the SNN runs T·B = 6; "
                                         r"repeat it T times"):
        snn(x, T=2, src_key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))


def test_integer_products_beyond_int64_are_refused():
    from golden.attention import HeadConfig, attention_head
    from golden.ecm import ecm_matmul_int
    with pytest.raises(ValueError, match="beyond int64"):
        ecm_matmul_int(torch.full((1, 1, 4), 1 << 31), torch.full((1, 4, 1), 1 << 31))
    assert ecm_matmul_int(torch.full((1, 1, 4), 1 << 30), torch.full((1, 4, 1), 1 << 30)) == 1 << 62
    # Step outputs are differences of cumulative values, which can wrap on their own.
    with pytest.raises(ValueError, match="differ by more than int64 holds between two steps"):
        ecm_matmul_int(torch.tensor([[[1 << 31]], [[-(1 << 32)]]]),
                       torch.tensor([[[3 << 30]], [[0]]]))
    # -2**63 is its own abs() in int64; its magnitude must still count.
    with pytest.raises(ValueError, match="values up to 9223372036854775808 can sum beyond int64"):
        ecm_matmul_int(torch.tensor([[[-2**63]], [[0]]]), torch.ones(2, 1, 1, dtype=torch.int64))
    config = HeadConfig(tokens=2, head_dim=4, time_steps=1, levels=16, q_exponents=(20, 0),
                        k_exponents=(20, 0), v_exponents=(0, 0), s_exponents=(-3, -3),
                        out_exponents=(0, 0), table=shipped_table(12, -8, 0), score_scale=0.5)
    q = torch.tensor([[[1 << 15] * 4, [0] * 4]])
    with pytest.raises(ValueError, match="beyond int64"):
        attention_head(q, q, torch.ones_like(q), config)


# -- calibration edge cases and the energy model's terms ----------------------------------------

def test_integer_lambda_rounds_down_to_a_power_of_two():
    from golden.convert import _exponent
    assert (_exponent(0.75), _exponent(1.5), _exponent(1.0), _exponent(0.0125)) == (-1, 0, 0, -7)


def test_a_site_that_calibrates_to_zero_is_refused():
    with pytest.raises(ValueError, match="λp must be positive"):
        convert(nn.Linear(4, 2).double(), [torch.zeros(10, 4, dtype=torch.float64)])


def test_equal_percentiles_are_refused():
    with pytest.raises(ValueError, match="percentiles"):
        ConversionConfig(percentiles=(0.5, 0.5))


def test_a_site_name_overrides_its_kind():
    mlp = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4)).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    snn = convert(mlp, [x], lambdas={"1:in": (0.5, 0.5), "linear": (1.0, 1.0)})
    assert snn.sites["1:in"].lambdas == (0.5, 0.5)
    assert snn.sites["0:in"].lambdas == (1.0, 1.0)


def test_a_spike_finer_than_act_frac_is_refused():
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    # The fc_out site's λ = 2**-3 is one bit finer than act_frac = 2 holds.
    snn = convert(block, [x], integer=True, act_frac=2,
                  lambdas={"s": (0.0125, 0.0125), "fc_out": (2.0 ** -3, 2.0 ** -3)})
    with pytest.raises(ValueError, match="raise act_frac"):
        snn(x, T=2)


def _cumulative_rate(stats, site: str) -> torch.Tensor:
    s = stats.sites[site]
    return torch.cumsum(s["spikes"], 0) / (s["neurons"] * stats.samples)


def test_sit_energy_of_an_attention_block_counts_every_input_rate():
    """SIT: each layer costs its FLOPs × the summed spike rates of its inputs × E_AC; the two
    attention matmuls have two spiking inputs each."""
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(3, 3, 4, dtype=torch.float64)
    snn = convert(block, [x])
    stats = snn.record_stats()
    snn(x, T=3)
    expected = sum(layer["flops"] * sum(_cumulative_rate(stats, n) for n in layer["inputs"]) * 0.9
                   for layer in stats.layers.values())
    assert energy_report(stats)["energy_snn_uj"] == pytest.approx((expected * 1e-6).tolist())


def test_sit_energy_charges_an_analog_layer_a_mac_per_step():
    mlp = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4)).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    snn = convert(mlp, [x], analog=("0",))
    stats = snn.record_stats()
    snn(x, T=4)
    t = torch.arange(1, 5, dtype=torch.float64)
    # Layer 1: 5·4 FLOPs on spikes; layer 0: 6·5 MACs at every step.
    expected = 20 * _cumulative_rate(stats, "1:in") * 0.9 + t * 30 * 4.6
    assert energy_report(stats)["energy_snn_uj"] == pytest.approx((expected * 1e-6).tolist())
