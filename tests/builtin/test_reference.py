"""The shipped reference model loads with stock transformers and scores as documented; builds match its shape."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunetune.builtin import arith, reference
from prunetune.checkpoint import load_model
from prunetune.errors import UserError
from tests.conftest import run_cli

MARGIN = 0.08  # 100 problems at ~95% have a standard error of ~2.2 points


def _card():
    return json.loads((reference.reference_dir() / "reference_build.json").read_text())


def test_shipped_reference_loads_with_stock_transformers_and_scores_as_documented():
    d = reference.reference_dir()
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    assert model.config.model_type == "llama"
    card = _card()
    assert card["accuracy"] >= 0.9 and card["eval_n"] >= 1000
    # a held-out sample disjoint from the one the card was measured on (another seed of the test split)
    records = arith.generate_problems(100, split="test", seed=123, **reference.DATA_OPTIONS)
    acc = reference.exact_match(model, tok, records)
    assert acc >= card["accuracy"] - MARGIN, acc


def test_builtin_name_resolves_to_shipped_assets():
    model, tok = load_model("reference")
    assert model.config.intermediate_size == reference.MODEL_CONFIG["intermediate_size"]
    assert tok.padding_side == "left" and tok.pad_token_id == reference.MODEL_CONFIG["pad_token_id"]


def test_short_build_has_the_shipped_shape(tmp_path):
    out = tmp_path / "ref"
    card = reference.build(out, steps=3, eval_every=0, final_eval_n=4, progress=False)
    shipped = json.loads((reference.reference_dir() / "config.json").read_text())
    built = json.loads((out / "config.json").read_text())
    ignore = {"transformers_version"}
    assert {k: v for k, v in built.items() if k not in ignore} == {
        k: v for k, v in shipped.items() if k not in ignore
    }
    assert card["steps"] == 3 and len(card["trajectory"]) == 1
    assert (out / "reference_build.json").is_file() and (out / "tokenizer.json").is_file()
    with pytest.raises(UserError, match="already exists"):
        reference.build(out, steps=1, progress=False)


def test_cli_refuses_existing_out_and_bad_steps(tmp_path, capsys):
    assert run_cli("reference", "build", "--out", tmp_path, "--steps", "1") == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("reference", "build", "--out", tmp_path / "new", "--steps", "0") == 2
    assert "--steps" in capsys.readouterr().err


def _padding(encoded, batch_size):
    return sum(
        max(len(ids) for ids, _ in encoded[i : i + batch_size]) * len(encoded[i : i + batch_size])
        for i in range(0, len(encoded), batch_size)
    )


def test_length_buckets_keep_the_problems_and_cut_padding():
    tok = reference.build_tokenizer(0, n_texts=300)
    enc = reference._encode(tok, arith.generate_problems(16 * 12, split="train", seed=0, **reference.DATA_OPTIONS))
    bucketed = reference.length_bucketed(enc, 16, 4, seed=0)
    assert sorted(map(repr, bucketed)) == sorted(map(repr, enc))  # same problems, only reordered
    assert _padding(bucketed, 16) < 0.9 * _padding(enc, 16)
    assert bucketed == reference.length_bucketed(enc, 16, 4, seed=0)  # seeded
    assert reference.length_bucketed(enc, 16, 0, seed=0) == enc  # off by default
    # batches are shuffled within a window, not served shortest first
    widths = [max(len(ids) for ids, _ in bucketed[i : i + 16]) for i in range(0, 64, 16)]
    assert len(set(widths)) > 1 and widths != sorted(widths), widths


def test_cli_names_the_bad_flag(tmp_path, capsys):
    for flag, value in (("--batch-size", "0"), ("--length-buckets", "-1"), ("--learning-rate", "0")):
        assert run_cli("reference", "build", "--out", tmp_path / "new", "--steps", "1", flag, value) == 2
        assert flag in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
