"""Shared helpers for scorer tests: calibration text, zeroing units through the adapter, invariant checks."""

import pytest
import torch

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance import calibration_batches
from prunetune.pruning.importance.mlp import mlp_in_parts

TEXTS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have? Answer: 3 + 5 = 8. #### 8",
    "The quick brown fox jumps over the lazy dog.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "import math\nprint(math.sqrt(16))",
    "12 * 4 = 48, 48 / 2 = 24.",
    "def add(a, b):\n    return a + b\n",
]
GENERAL = [
    "The answer is 42. Let's think step by step.",
    "for i in range(10):\n    x = i * 2\n",
    "She sold half as many clips in May as in April.",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared, loaded 2-core machine two threads were ~20x
    slower (each waits for the other to be scheduled). Scoped to these tests, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batches():
    from prunetune.builtin.tokenizer import tiny_tokenizer

    return calibration_batches(tiny_tokenizer(), TEXTS, max_length=48, batch_size=4)


def snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model, before: dict) -> None:
    """Weights identical, no hooks left on any module, no gradients left behind."""
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed"
    for name, module in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_forward_hooks_with_kwargs"):
            assert not getattr(module, attr, {}), f"{attr} left on {name!r}"
    assert all(p.grad is None for p in model.parameters())


@torch.no_grad()
def zero_neurons(model, neurons: list[int]) -> None:
    """Zero the given MLP neurons in every layer: gate/up rows and biases and the down_proj column."""
    adapter = get_adapter(model)
    width = ModelShape.from_config(model.config).intermediate_size
    idx = torch.tensor(neurons)
    for layer in adapter.layers(model):
        for linear, row, _ in mlp_in_parts(adapter, layer, width):
            linear.weight[row + idx] = 0
            if linear.bias is not None:
                linear.bias[row + idx] = 0
        adapter.mlp_out_linear(layer).weight[:, idx] = 0


@torch.no_grad()
def zero_kv_group(model, group: int) -> None:
    """Zero the o_proj columns of every query head in `group`, in every layer."""
    adapter = get_adapter(model)
    shape = ModelShape.from_config(model.config)
    d, gs = shape.head_dim, shape.group_size
    for layer in adapter.layers(model):
        adapter.attn_out_linear(layer).weight[:, group * gs * d : (group + 1) * gs * d] = 0


def identity_layer_params(model, index: int) -> list[torch.nn.Parameter]:
    """The o_proj and down_proj weights and biases of a layer: zeroed, the layer is an identity."""
    adapter = get_adapter(model)
    layer = adapter.layers(model)[index]
    out = []
    for linear in (adapter.attn_out_linear(layer), adapter.mlp_out_linear(layer)):
        out += [p for p in (linear.weight, linear.bias) if p is not None]
    return out


def lowest(scores: torch.Tensor, k: int) -> list[set]:
    """Per row, the set of indices of the k lowest scores."""
    return [set(row.argsort()[:k].tolist()) for row in scores]
