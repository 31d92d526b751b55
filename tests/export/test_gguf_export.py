"""GGUF export: bad input is one line, exit 2, nothing written; the K-quant row rule."""

from prunetune.builtin.tiny import tiny_config, tiny_model
from prunetune.checkpoint import save_checkpoint
from prunetune.cli import main
from prunetune.models.serving import gguf_row_issues
from prunetune.models.shape import ModelShape


def _err(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    model, tok = tiny_model("llama")
    ckpt = save_checkpoint(model, tok, tmp_path / "m")
    out = tmp_path / "o.gguf"
    assert "unknown GGUF type 'q4_km'" in _err(capsys, ["export", str(ckpt), "--gguf", str(out), "--outtype", "q4_km"])
    assert "not a model checkpoint" in _err(capsys, ["export", str(tmp_path), "--gguf", str(out)])
    assert "has no checkpoint directory" in _err(capsys, ["export", "tiny-random-llama", "--gguf", str(out)])
    (tmp_path / "exists.gguf").write_text("x")
    assert "already exists" in _err(capsys, ["export", str(ckpt), "--gguf", str(tmp_path / "exists.gguf")])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["exists.gguf", "m"]


def test_sentencepiece_families_need_tokenizer_model(tmp_path, capsys):
    model, tok = tiny_model("phi3")
    ckpt = save_checkpoint(model, tok, tmp_path / "m")
    assert "tokenizer.model" in _err(capsys, ["export", str(ckpt), "--gguf", str(tmp_path / "o.gguf")])


def test_row_rule_names_each_length_that_is_not_a_multiple_of_256():
    shape = ModelShape.from_config(tiny_config("llama", hidden_size=512, intermediate_size=768, head_dim=128))
    assert gguf_row_issues(shape) == []
    shape = ModelShape.from_config(tiny_config("llama", hidden_size=576, intermediate_size=1000, head_dim=64,
                                               num_attention_heads=9, num_key_value_heads=3))
    assert gguf_row_issues(shape) == ["hidden_size 576", "heads x head_dim 576", "intermediate_size 1000"]
    assert gguf_row_issues(shape, 32) == ["intermediate_size 1000"]  # q8_0 / q4_0 blocks
