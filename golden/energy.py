"""Energy per sample of a converted model by the papers' operation-count models.

Both models use the 45 nm figures of Horowitz (ISSCC 2014) that SIT and ECMT quote:
``E_MAC = 4.6 pJ`` (an ANN multiply-accumulate) and ``E_AC = 0.9 pJ`` (an SNN addition).

* **ANN:** ``E_ANN = sum_l FLOPs_l * E_MAC`` over the Linear layers and the two attention
  matmuls (LayerNorm, softmax and GELU are not counted, as in both papers).
* **SIT (§4.1.2):** ``E_SNN(t) = sum_l FLOPs_l * SpikeNum_l(1..t) / NeuronNum_l * E_AC`` for a
  layer fed by spikes. A product of two spiking tensors (matmul-ECM) counts the spike rates of
  both operands, since a spike of either triggers a row of additions.
* **ECMT (``SOPMonitor``):** ``E_SNN(t) = SOPs(1..t) * E_AC`` with the synaptic operations
  counted as ECMT's monitor counts them: nonzero inputs × fan-out per Linear, and for each
  matmul-ECM ``A_t·B_t + A_t·SB_t + SA_t·B_t`` over the pairs whose two operands are nonzero,
  the running sums including step t (:func:`golden.attention.matmul_sops`).

Layers with real-valued inputs (``analog``: ECMT's patch embedding and classifier) multiply at
every step; both SNN figures add ``t * FLOPs_l * E_MAC`` for them (the papers leave them out).
"""

from __future__ import annotations

import torch

from .convert import SiteStats

__all__ = ["E_MAC_PJ", "E_AC_PJ", "energy_report"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


def _rate(stats: SiteStats, names) -> torch.Tensor:
    """Spikes per neuron over steps 1..t of the sites ``names`` together (per sample)."""
    spikes = sum(torch.cumsum(stats.sites[n]["spikes"], 0) for n in names)
    neurons = sum(stats.sites[n]["neurons"] for n in names)
    return spikes / (neurons * stats.samples)


def energy_report(stats: SiteStats) -> dict:
    """Per-sample figures by step t (lists of length T)."""
    if not stats.samples:
        raise ValueError("the statistics are empty: run the model after record_stats()")
    if not stats.sites:
        raise ValueError("the model has no MT site (every Linear analog?): nothing spikes")
    T = len(next(iter(stats.sites.values()))["spikes"])
    t = torch.arange(1, T + 1, dtype=torch.float64)
    flops = sum(layer["flops"] for layer in stats.layers.values())
    sit = torch.zeros(T, dtype=torch.float64)
    analog = torch.zeros(T, dtype=torch.float64)
    sops = torch.zeros(T, dtype=torch.float64)
    for layer in stats.layers.values():
        if layer["kind"] == "analog":
            analog += t * layer["flops"] * E_MAC_PJ
            continue
        rate = _rate(stats, layer["inputs"][:1]) + (
            _rate(stats, layer["inputs"][1:]) if len(layer["inputs"]) > 1 else 0)
        sit += layer["flops"] * rate * E_AC_PJ
        sops += torch.cumsum(layer["sops"], 0) / stats.samples
    spikes = sum(torch.cumsum(s["spikes"], 0) for s in stats.sites.values())
    neurons = sum(s["neurons"] for s in stats.sites.values())
    e_ann = flops * E_MAC_PJ
    e_sit = sit + analog
    e_ecmt = sops * E_AC_PJ + analog
    return {
        "ann_flops": flops,
        "energy_ann_uj": e_ann * 1e-6,
        "energy_snn_uj": (e_sit * 1e-6).tolist(),
        "energy_ratio": (e_sit / e_ann).tolist(),
        "energy_snn_ecmt_uj": (e_ecmt * 1e-6).tolist(),
        "energy_ratio_ecmt": (e_ecmt / e_ann).tolist(),
        "sops": sops.tolist(),
        "spikes_per_neuron": (spikes / (neurons * stats.samples)).tolist(),
    }
