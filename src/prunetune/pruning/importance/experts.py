"""Expert importance in mixture-of-experts layers: routed experts and the neurons inside them.

One forward hook on each sparse block's experts module sees the tokens, the router's top-k choices and
weights; it re-runs each chosen expert on its own tokens (scoring only, no edit) to read the expert's
output norm and its per-neuron activations act(gate) * up. Padding tokens are masked out.

- `reap` (Lasby et al., 2025, REAP): mean over the tokens routed to an expert of gate weight x
  ||expert output||, the expert's average contribution to the residual stream when it is chosen.
- `frequency`: the share of real tokens routed to the expert (top-k counts), the classic baseline.
- expert neurons, `activation`: mean |act(gate) * up| over routed tokens x ||down column||, as for
  dense MLP neurons; shared-expert neurons the same over every token (the shared expert always runs).
"""

from __future__ import annotations

import torch

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance.calibration import (
    TokenMask,
    check_batches,
    forward,
    progress_bar,
    scoring_pass,
)
from prunetune.pruning.importance.scorers import EXPERT_NEURON_SCORERS, EXPERT_SCORERS, Calibration


class ExpertStats:
    """Per sparse layer: routed-token counts, REAP sums, and per-neuron |activation| sums, in fp32 on CPU."""

    def __init__(self, model):
        self.adapter = get_adapter(model)
        self.shape = s = ModelShape.from_config(model.config)
        n, E = len(s.moe_layers), s.num_experts
        self.count = torch.zeros(n, E)
        self.reap = torch.zeros(n, E)
        self.neurons = torch.zeros(n, E, s.moe_intermediate_size)
        self.shared = torch.zeros(n, s.shared_expert_intermediate_size)
        self.tokens = 0.0
        self.mask = TokenMask()

    def _experts_hook(self, row: int):
        moe = self.adapter.moe

        def hook(module, args, output):
            hidden, index, weights = args[0], args[1], args[2]
            real = self.mask.weights.to(hidden.device) if self.mask.weights is not None else None
            for e in index.unique().tolist():
                tok, pos = torch.where(index == e)
                keep = real[tok] > 0 if real is not None else slice(None)
                tok, pos = tok[keep], pos[keep]
                if tok.numel() == 0 or e >= self.shape.num_experts:
                    continue
                act, out = moe.expert_forward(module, e, hidden[tok])
                g = weights[tok, pos].float()
                self.count[row, e] += tok.numel()
                self.reap[row, e] += float((g * out.float().norm(dim=-1)).sum())
                self.neurons[row, e] += act.float().abs().sum(dim=0).cpu()

        return hook

    def _shared_hook(self, row: int):
        def hook(module, args):
            self.shared[row] += self.mask.masked_sum(args[0].reshape(-1, args[0].shape[-1]).abs()).cpu()

        return hook

    def run(self, model, batches: list[dict], desc: str, progress: bool) -> None:
        moe, layers = self.adapter.moe, self.adapter.layers(model)
        with scoring_pass(model) as handles:
            for row, i in enumerate(self.shape.moe_layers):
                handles.append(moe.experts_module(layers[i]).register_forward_hook(self._experts_hook(row)))
                shared = moe.shared_module(layers[i])
                if shared is not None:
                    down = getattr(shared, self.adapter.mlp_out)
                    handles.append(down.register_forward_pre_hook(self._shared_hook(row)))
            for batch in progress_bar(check_batches(batches), desc, progress):
                forward(model, batch, self.mask)
                self.tokens += float(batch["attention_mask"].sum())

    def neuron_scores(self, model) -> tuple[torch.Tensor, torch.Tensor | None]:
        moe, layers = self.adapter.moe, self.adapter.layers(model)
        rows, shared = [], []
        for row, i in enumerate(self.shape.moe_layers):
            down = getattr(moe.experts_module(layers[i]), moe.down).detach().float()  # [E, hidden, width]
            mean = self.neurons[row] / self.count[row].clamp(min=1)[:, None]
            rows.append((mean * down.norm(dim=1).cpu()).reshape(-1))
            sm = moe.shared_module(layers[i])
            if sm is not None:
                col = getattr(sm, self.adapter.mlp_out).weight.detach().float().norm(dim=0).cpu()
                shared.append(self.shared[row] / max(self.tokens, 1.0) * col)
        return torch.stack(rows), (torch.stack(shared) if shared else None)


@EXPERT_SCORERS.register("reap")
def score_reap(model, calib: Calibration) -> torch.Tensor:
    """Mean over routed tokens of router weight x ||expert output|| (never-routed experts score 0)."""
    stats = ExpertStats(model)
    stats.run(model, calib.batches, "scoring experts (reap)", calib.progress)
    return stats.reap / stats.count.clamp(min=1)


@EXPERT_SCORERS.register("frequency")
def score_frequency(model, calib: Calibration) -> torch.Tensor:
    """Share of real tokens whose top-k includes the expert."""
    stats = ExpertStats(model)
    stats.run(model, calib.batches, "scoring experts (frequency)", calib.progress)
    return stats.count / max(stats.tokens, 1.0)


@EXPERT_SCORERS.register("random")
def score_random_experts(model, calib: Calibration) -> torch.Tensor:
    """Uniform random scores, seeded (the control)."""
    s = ModelShape.from_config(model.config)
    return torch.rand(len(s.moe_layers), s.num_experts, generator=torch.Generator().manual_seed(calib.seed))


@EXPERT_NEURON_SCORERS.register("activation")
def score_expert_activation(model, calib: Calibration):
    """Mean |act(gate) * up| over the tokens routed to the expert x ||down column|| (shared: over all tokens)."""
    stats = ExpertStats(model)
    stats.run(model, calib.batches, "scoring expert neurons (activation)", calib.progress)
    return stats.neuron_scores(model)


@EXPERT_NEURON_SCORERS.register("random")
def score_random_expert_neurons(model, calib: Calibration):
    s = ModelShape.from_config(model.config)
    g = torch.Generator().manual_seed(calib.seed)
    experts = torch.rand(len(s.moe_layers), s.num_experts * s.moe_intermediate_size, generator=g)
    shared = torch.rand(len(s.moe_layers), s.shared_expert_intermediate_size, generator=g)
    return experts, (shared if s.shared_expert_intermediate_size else None)
