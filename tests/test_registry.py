"""One registry mechanism: register, look up with did-you-mean, plugins from entry points, `ls -v`."""

from dataclasses import dataclass

import pytest

from prunetune.errors import UserError
from prunetune.registry import Registry, load_plugins
from tests.conftest import run_cli


def test_register_get_and_did_you_mean():
    reg = Registry("widget")

    @dataclass
    class Opts:
        size: int = 1
        """How big."""

    @reg.register("sprocket", options=Opts)
    def sprocket():
        """Turns things."""

    assert reg.get("sprocket") is sprocket and "sprocket" in reg and list(reg) == ["sprocket"]
    entry = reg.entry("sprocket")
    assert entry.doc == "Turns things." and entry.options is Opts
    with pytest.raises(UserError, match=r"unknown widget 'sprockt' \(did you mean 'sprocket'\?\); choose from sprocket"):
        reg.get("sprockt")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("sprocket")(lambda: None)


def test_the_builtin_world_arrives_as_a_plugin():
    from importlib.metadata import entry_points

    assert "prunetune.builtin" in {ep.value for ep in entry_points(group="prunetune.plugins")}
    load_plugins()
    from prunetune.checkpoint import MODELS
    from prunetune.data import SOURCES
    from prunetune.tasks import TASKS

    assert "reference" in MODELS and "tiny-random-qwen3" in MODELS
    assert "arith" in TASKS and "arith" in SOURCES


def test_every_registry_lists_its_entries_and_options(capsys):
    assert run_cli("ls") == 0
    out = capsys.readouterr().out
    for line in ("mlp scorers:", "recovery:", "tasks:", "text sources:", "built-in models:", "recipes:"):
        assert line in out
    assert run_cli("ls", "-v") == 0
    out = capsys.readouterr().out
    assert "ptl:" in out and "top_n" in out and "order" in out  # a scorer's options, documented
    assert "learning_rate" in out and "num_generations" in out  # every tuner's config keys
    assert "Peak AdamW learning rate" in out
    assert "(required)" not in out  # a scorer's calling convention is not an option
    assert "max_number" in out  # a task's constructor options are
    keys = out.split("recipe keys")[1]  # every recipe key, sections flattened, with its default and doc
    assert "recovery.growth" in keys and "schedule.max_damage" in keys and "  iterations " in keys
    assert "steps of each iteration over the one before" in keys
    # optional sub-sections are flattened too, and the recovery options from the dense model's outputs are there
    assert "recovery.prompts.sources" in keys and "recovery.teacher_data.rejection" in keys
    assert "recovery.teacher_correction.method" in keys and "onpolicy:" in out and "max_completion_length" in out
