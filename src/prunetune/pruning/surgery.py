"""Surgery: the only code that edits a model. It physically removes what a PruningPlan names.

Per-layer units (MLP neurons, KV groups) and whole layers are cut here; residual-stream channels, which
touch every module, in hidden_surgery.py through the same slicer.

Weights and biases are sliced per layer (no second full copy of the model), the config is fixed so
that stock `from_pretrained` rebuilds the same architecture, and optional optimizer state (Adam
moments keyed by parameter name) is sliced and renamed along with the parameters it belongs to.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.hidden_surgery import cut_hidden
from prunetune.pruning.plan import Constraints, PruningPlan
from prunetune.pruning.surgery_moe import apply_moe

OptimizerState = dict[str, dict[str, torch.Tensor]]


class _Slicer:
    """Slices parameters in place and keeps name-keyed optimizer state in step with them."""

    def __init__(self, model: nn.Module, state: OptimizerState | None):
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.state = state

    def __call__(self, linear: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None):
        for attr in ("weight", "bias"):
            p = getattr(linear, attr, None)
            if p is None:
                continue
            name = self.names.get(id(p))
            new = _take(p.data, rows, cols if attr == "weight" else None)
            setattr(linear, attr, nn.Parameter(new, requires_grad=p.requires_grad))
            self.names[id(getattr(linear, attr))] = name  # a tensor may be cut twice (neurons, then channels)
            if self.state is not None and name in self.state:
                self.state[name] = {
                    k: (_take(v, rows, cols if attr == "weight" else None) if v.shape == p.shape else v)
                    for k, v in self.state[name].items()
                }
        if isinstance(linear, nn.Linear):
            linear.out_features, linear.in_features = linear.weight.shape

    def param(self, module: nn.Module, attr: str, take) -> None:
        """Replace `module.<attr>` by take(it) (e.g. fused 3-D experts); same-shaped optimizer state follows."""
        p = getattr(module, attr)
        name = self.names.get(id(p))
        setattr(module, attr, nn.Parameter(take(p.data).contiguous(), requires_grad=p.requires_grad))
        self.names[id(getattr(module, attr))] = name
        if self.state is not None and name in self.state:
            self.state[name] = {k: (take(v).contiguous() if v.shape == p.shape else v) for k, v in self.state[name].items()}


def _take(t: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    if rows is not None:
        t = t.index_select(0, rows.to(t.device))
    if cols is not None and t.dim() == 2:
        t = t.index_select(1, cols.to(t.device))
    return t.contiguous()


def _block_rows(blocks: tuple[str, ...], sizes: dict[str, int], keep: dict[str, torch.Tensor]) -> torch.Tensor:
    """Row indices to keep in a Linear whose output rows are the named blocks laid end to end."""
    out, offset = [], 0
    for b in blocks:
        out.append(keep[b] + offset)
        offset += sizes[b]
    return torch.cat(out)


def _keep(n: int, removed: list[int]) -> torch.Tensor:
    drop = set(removed)
    return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)


def _expand_heads(units: torch.Tensor, width: int) -> torch.Tensor:
    """Unit indices (heads) -> row/column indices (head * width + 0..width-1)."""
    return (units[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


@torch.no_grad()
def apply_plan(
    model: nn.Module,
    plan: PruningPlan,
    *,
    constraints: Constraints = Constraints(),
    optimizer_state: OptimizerState | None = None,
) -> OptimizerState | None:
    """Remove in place what `plan` names (validated first); return the sliced, renamed optimizer state."""
    adapter = get_adapter(model)
    config = model.config
    shape = ModelShape.from_config(config)
    after = plan.validate(shape, constraints)
    slicer = _Slicer(model, optimizer_state)
    layers = adapter.layers(model)
    hd, G = shape.head_dim, shape.group_size

    for i, layer in enumerate(layers):
        if i in plan.mlp_neurons:  # dense layers (all of them in a dense model)
            keep = _keep(shape.intermediate_size, plan.mlp_neurons[i])
            sizes = {"mlp": shape.intermediate_size}
            for rb in adapter.mlp_in_blocks(layer):
                slicer(rb.linear, rows=_block_rows(rb.blocks, sizes, {"mlp": keep}))
            slicer(adapter.mlp_out_linear(layer), cols=keep)
        if plan.kv_per_layer:
            kv_keep = _keep(shape.num_key_value_heads, plan.kv_groups[i])
            q_keep = _expand_heads(kv_keep, G)
            keep = {"q": _expand_heads(q_keep, hd), "k": _expand_heads(kv_keep, hd), "v": _expand_heads(kv_keep, hd)}
            sizes = {"q": shape.num_attention_heads * hd, "k": shape.num_key_value_heads * hd,
                     "v": shape.num_key_value_heads * hd}
            for rb in adapter.attn_in_blocks(layer) + adapter.attn_row_norms(layer):
                slicer(rb.linear, rows=_block_rows(rb.blocks, sizes, keep))
            slicer(adapter.attn_out_linear(layer), cols=keep["q"])
            adapter.set_attn_counts(layer, after.num_attention_heads, after.num_key_value_heads)

    if plan.hidden_channels:
        cut_hidden(model, adapter, _keep(shape.hidden_size, plan.hidden_channels), slicer)
    if shape.dense_layers:
        config.intermediate_size = after.intermediate_size
    config.num_attention_heads = after.num_attention_heads
    config.num_key_value_heads = after.num_key_value_heads
    config.head_dim = hd  # explicit: families with head_dim=None would recompute hidden/heads on reload
    if shape.moe_layers:
        apply_moe(model, plan, shape, after, slicer)

    if plan.layers:
        kept = [i for i in range(shape.num_hidden_layers) if i not in set(plan.layers)]
        old_names = {id(m): n for n, m in model.named_modules()}
        new_layers = nn.ModuleList([layers[i] for i in kept])
        for new_idx, layer in enumerate(new_layers):
            adapter.set_layer_index(layer, new_idx)
        adapter.set_layers(model, new_layers)
        config.num_hidden_layers = len(kept)
        for key in adapter.per_layer_config:  # layer_types, no_rope_layers, ...
            if getattr(config, key, None) is not None:
                setattr(config, key, [getattr(config, key)[i] for i in kept])
        if shape.moe_layers:
            adapter.moe.set_layer_ids(config, list(after.moe_layers))
        if optimizer_state is not None:
            optimizer_state = _rename(model, old_names, optimizer_state)
    return optimizer_state


def _rename(model: nn.Module, old_names: dict[int, str], state: OptimizerState) -> OptimizerState:
    """Carry state to the parameters' new names (modules keep their identity); removed layers' state is dropped."""
    out: OptimizerState = {}
    for name, module in model.named_modules():
        old = old_names.get(id(module))  # None only for the new ModuleList, which holds no parameters
        for pname, _ in module.named_parameters(recurse=False):
            key = f"{old}.{pname}" if old else pname
            if key in state:
                out[f"{name}.{pname}" if name else pname] = state[key]
    return out
