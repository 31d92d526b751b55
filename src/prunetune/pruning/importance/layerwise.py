"""Layer-by-layer scoring: the calibration forwards run one decoder layer at a time on the compute device.

Every batch is first embedded (the decoder runs with its layers stood in for by recorders, which keep
each layer's keyword inputs: masks, position embeddings); then each layer in turn is brought onto the
compute device, runs every batch's hidden states and goes home again, so the device holds one layer
plus the calibration activations. A layer's home is the model itself (kept on CPU) or, with
`Layerwise(checkpoint=DIR)`, the safetensors checkpoint it is read from one layer at a time.

The scorers' hooks see the same tensors as in a whole-model pass, in the same batch order per layer,
so the scores are the same (tests/pruning/importance/test_layerwise.py, every family). Only scorers
marked `@layerwise_capable` take this path: taylor backs the loss through the whole model and
skip_loss re-runs every layer above the skipped one, so they refuse it (`check_layerwise`).

Why not accelerate's cpu_offload hooks: they keep the batch-major order (every batch brings every
layer onto the device: layers x batches transfers instead of layers) and leave the offloaded weights on
the meta device, where the scorers that read weights could not see them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.pruning.importance.calibration import TokenMask, forward, model_device, progress_bar


@dataclass(frozen=True)
class Layerwise:
    """How to score layer by layer: the compute device, and where the layers wait between uses."""

    device: str | None = None
    """Compute device; None: the current CUDA device when there is one, else the model's device."""
    checkpoint: str | None = None
    """A safetensors checkpoint directory the decoder layers are read from one at a time (the model's
    layers then sit on the meta device, e.g. built under accelerate's init_empty_weights); None: the
    layers live in the model and are moved to the device and back."""


def as_layerwise(value: bool | Layerwise | None) -> Layerwise | None:
    if isinstance(value, Layerwise):
        return value
    return Layerwise() if value else None


def layerwise_capable(fn):
    """Mark a scorer whose statistics come from forward hooks (or from no forward at all)."""
    fn.layerwise = True
    return fn


def check_layerwise(registry, method: str, key: str = "prune.layerwise") -> None:
    """A scorer that cannot run layer by layer is a one-line error naming the option."""
    if not getattr(registry.get(method), "layerwise", False):
        able = [n for n in registry.names() if getattr(registry.get(n), "layerwise", False)]
        raise UserError(
            f"{key}: the {registry.kind} '{method}' needs the whole model at once (a backward through "
            f"every layer, or re-running the layers above one); turn {key} off or use {', '.join(able)}"
        )


def scoring_device(model, layerwise: Layerwise | None) -> torch.device:
    """Where a scorer keeps its accumulators: the compute device."""
    if layerwise is None:
        return model_device(model)
    if layerwise.device is not None:
        return torch.device(layerwise.device)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return model_device(model)


def run_forwards(model, batches: list[dict], mask: TokenMask, *, layerwise: Layerwise | None, desc: str,
                 progress: bool) -> None:
    """Every batch through the decoder with the scorer's hooks in place (call inside scoring_pass):
    batch by batch through the whole model, or, with `layerwise`, layer by layer."""
    if layerwise is None:
        for batch in progress_bar(batches, desc, progress):
            forward(model, batch, mask)
        return
    device = scoring_device(model, layerwise)
    home = _ModelHome(model) if layerwise.checkpoint is None else _DiskHome(model, layerwise.checkpoint)
    hidden, inputs = _embed(model, batches, device)
    masks = [b["attention_mask"].to(device) for b in batches]
    layers = get_adapter(model).layers(model)
    for i in progress_bar(list(range(len(layers))), desc, progress):
        layer = home.bring(i, layers[i], device)
        try:
            for b, (args, kwargs) in enumerate(inputs[i]):
                mask.set(masks[b])
                out = layer(hidden[b], *args, **kwargs)
                hidden[b] = out[0] if isinstance(out, tuple) else out
        finally:
            home.send_back(i, layer)


class _Recorder(nn.Module):
    """Stands in for a decoder layer during the embedding pass: keeps its inputs, passes hidden states on."""

    def __init__(self, store: list):
        super().__init__()
        self.store = store

    def forward(self, *args, **kwargs):
        if args:
            hidden, rest = args[0], args[1:]
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        self.store.append((rest, kwargs))
        return hidden


def _embed(model, batches: list[dict], device: torch.device) -> tuple[list, list[list]]:
    """Layer-0 hidden states per batch, and per layer the (args, kwargs) the decoder hands it per batch.

    The decoder's own forward computes embeddings, masks (per layer type: sliding or full) and position
    embeddings, so nothing family-specific is rebuilt here; only the modules outside the layers visit
    the device.
    """
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    inputs: list[list] = [[] for _ in layers]
    first: list = []

    class First(_Recorder):
        def forward(self, *args, **kwargs):
            first.append(args[0] if args else kwargs["hidden_states"])
            return super().forward(*args, **kwargs)

    recorders = [First(inputs[0])] + [_Recorder(inputs[i]) for i in range(1, len(layers))]
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    home = model_device(decoder)
    adapter.set_layers(model, nn.ModuleList(recorders))
    try:
        decoder.to(device)
        scratch = TokenMask()
        for batch in batches:
            forward(model, batch, scratch)
    finally:
        decoder.to(home)
        adapter.set_layers(model, layers)
    return first, inputs


class _ModelHome:
    """The layers live in the model (e.g. on CPU): moved onto the device for their turn and back."""

    def __init__(self, model):
        self.home = model_device(model)

    def bring(self, i: int, layer: nn.Module, device: torch.device) -> nn.Module:
        return layer.to(device)

    def send_back(self, i: int, layer: nn.Module) -> None:
        layer.to(self.home)


class _DiskHome:
    """The layers live in a safetensors checkpoint: read onto the device for their turn, then dropped
    (back to the meta device), so host memory holds one layer at a time too."""

    def __init__(self, model, checkpoint: str):
        root = Path(checkpoint)
        index = root / "model.safetensors.index.json"
        if index.is_file():
            self.files = {k: root / f for k, f in json.loads(index.read_text())["weight_map"].items()}
        else:
            from safetensors import safe_open

            single = root / "model.safetensors"
            if not single.is_file():
                raise UserError(f"layerwise checkpoint: no model.safetensors in '{checkpoint}'")
            with safe_open(single, "pt") as f:
                self.files = {k: single for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
        names = {id(m): n for n, m in model.named_modules()}
        self.prefixes = [names[id(layer)] + "." for layer in get_adapter(model).layers(model)]

    def bring(self, i: int, layer: nn.Module, device: torch.device) -> nn.Module:
        from safetensors import safe_open

        prefix = self.prefixes[i]
        state = {}
        for file in sorted({f for k, f in self.files.items() if k.startswith(prefix)}):
            with safe_open(file, "pt", device=str(device)) as f:
                state.update({k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)})  # noqa: SIM118
        layer.load_state_dict(state, assign=True)
        return layer

    def send_back(self, i: int, layer: nn.Module) -> None:
        layer.to("meta")
