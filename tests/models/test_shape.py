import pytest

from prunetune.builtin.tiny import tiny_config, tiny_model
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape


def test_param_count_from_config_matches_model(family):
    model, _ = tiny_model(family)
    shape = ModelShape.from_config(model.config)
    assert shape.params() == sum(p.numel() for p in model.parameters())


def test_unsupported_family_is_user_error():
    class C:
        model_type = "gpt2"

    with pytest.raises(UserError, match="unsupported model family 'gpt2'.*llama"):
        get_adapter(C())
    C.model_type = "gemma3"  # the multimodal Gemma 3: the error points at its text-only model type
    with pytest.raises(UserError, match="'gemma3' \\(multimodal.*'gemma3_text'"):
        get_adapter(C())


def test_unknown_tiny_family_suggests():
    with pytest.raises(UserError, match="did you mean 'llama'"):
        tiny_config("lama")
