"""The one typed config mechanism: values coerced by annotation, bounds, unknown keys, overrides, field docs."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from prunetune.config import Raw, bounded, build, describe, field_docs, parse_overrides, read_yaml
from prunetune.errors import UserError
from tests.conftest import run_cli


@dataclass
class Inner:
    rate: float = bounded(0.1, gt=0.0)
    """A rate."""
    name: str | None = None


@dataclass
class Outer:
    count: int = bounded(1, ge=1)
    """How many."""
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    items: list[str] = field(default_factory=list)
    table: dict[int, int] = field(default_factory=dict)
    free: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_values_are_coerced_by_annotation_from_yaml_and_from_override_text():
    got = build(Outer, parse_overrides(
        ["count=3", "flag=yes", "mode=b", "items=x, y", "table={2: 1}", "inner.rate=1e-3", "inner.name=null",
         "free.template=Q: {q}", "free.n=4"]
    ))
    assert (got.count, got.flag, got.mode, got.items, got.table) == (3, True, "b", ["x", "y"], {2: 1})
    assert got.inner == Inner(rate=1e-3, name=None)
    assert got.free == {"template": "Q: {q}", "n": 4}  # text stays text, numbers become numbers
    # YAML 1.1 reads 1e-3 as a string; a float field takes it as the number it is
    assert build(Outer, {"inner": {"rate": "1e-3"}}).inner.rate == 1e-3


@pytest.mark.parametrize(
    "data, message",
    [
        ({"count": "abc"}, "count: expected an integer, got 'abc'"),
        ({"count": 2.5}, "count: expected an integer, got 2.5"),
        ({"count": 0}, "count: must be at least 1, got 0"),
        ({"flag": "maybe"}, "flag: expected true or false, got 'maybe'"),
        ({"mode": "c"}, "mode: must be one of a, b, got 'c'"),
        ({"inner": {"rate": "fast"}}, "inner.rate: expected a number, got 'fast'"),
        ({"inner": {"rate": float("inf")}}, "inner.rate: expected a finite number"),
        ({"inner": {"rate": 0}}, "inner.rate: must be greater than 0.0"),
        ({"inner": {"rte": 1}}, "unknown key 'inner.rte' (did you mean 'rate'?)"),
        ({"inner": 5}, "inner: expected a mapping, got 5"),
        ({"table": {"x": 1}}, "table: expected an integer, got 'x'"),
        ({"items": 3}, "items: expected a list, got 3"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(UserError) as e:
        build(Outer, data)
    assert message in str(e.value)


def test_a_genuine_bug_in_a_config_class_is_not_reported_as_bad_input():
    @dataclass
    class Broken:
        x: int = 1

        def __post_init__(self):
            raise TypeError("a bug, not the user's fault")

    with pytest.raises(TypeError, match="a bug"):
        build(Broken, {"x": 2})


def test_overrides_set_whole_sections_then_keys_in_order():
    got = parse_overrides(["a.b=1", "a={}", "a.c=2"], base={"a": {"z": 9}})
    assert got == {"a": {"c": "2"}} and isinstance(got["a"]["c"], Raw)
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["nothing"])
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["a..b=1"])
    with pytest.raises(UserError, match="conflicts"):
        parse_overrides(["a=1", "a.b=2"])


def test_field_docs_come_from_the_string_under_each_field():
    assert field_docs(Outer)["count"] == "How many."
    assert ("rate", "0.1", "A rate.") in describe(Inner)


def test_read_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(UserError, match="not valid YAML at line"):
        read_yaml(bad)
    bad.write_text("- 1\n")
    with pytest.raises(UserError, match="must be a mapping"):
        read_yaml(bad)
    bad.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_yaml(bad)


@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=abc", "seed: expected an integer, got 'abc'"),
        ("iterations=2.5", "iterations: expected an integer, got '2.5'"),
        ("one_shot=maybe", "one_shot: expected true or false, got 'maybe'"),
        ("gate.max_retries=-5", "gate.max_retries: must be at least 0, got -5"),
        ("gate.max_drop=abc", "gate.max_drop: expected a number, got 'abc'"),
        ("target.keep=half", "target.keep: expected a number, got 'half'"),
        ("evaluation.limit=abc", "evaluation.limit: expected an integer, got 'abc'"),
        ("prune.ptl_order=index", "unknown key 'prune.ptl_order'"),
    ],
)
def test_validate_rejects_ill_typed_recipe_values(capsys, override, message):
    assert run_cli("validate", "smoke", override) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_scientific_notation_is_a_number_everywhere(tmp_path, capsys):
    assert run_cli("validate", "smoke", "gate.max_drop=5e-2", "recovery.config.learning_rate=1e-3") == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: tiny-random-llama\nrecovery:\n  config: {learning_rate: 1e-3, max_steps: 2}\n")
    assert run_cli("validate", recipe) == 0, capsys.readouterr().err
    from prunetune.loop import load_recipe

    assert load_recipe("smoke", ["gate.max_drop=5e-2"]).gate.max_drop == 0.05


def test_a_choice_named_none_survives_an_untyped_mapping():
    from prunetune.loop import load_recipe
    from prunetune.recovery import resolve_config

    recipe = load_recipe("paper-qwen2.5-7b-grpo", ["recovery.config.sharding=none", "recovery.config.cpu_offload=false"])
    assert recipe.recovery.config["sharding"] is None  # the mapping is untyped: `none` reads as null there
    assert resolve_config("grpo", recipe.recovery.config).sharding == "none"  # the typed key knows the choice
