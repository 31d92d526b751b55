"""bench/moe_speed.py on a shrunken OLMoE shape: it removes the asked share of experts and writes its tables."""

import importlib.util
import json
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "moe_speed.py"
_spec = importlib.util.spec_from_file_location("bench_moe_speed", _PATH)
moe_speed = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = moe_speed
_spec.loader.exec_module(moe_speed)


def test_ratios_and_limits_are_written(tmp_path, monkeypatch):
    small = dict(moe_speed.SHAPES["olmoe-1b-7b"], hidden_size=64, intermediate_size=32, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512)
    monkeypatch.setitem(moe_speed.SHAPES, "olmoe-1b-7b", small)
    out = tmp_path / "moe_speed"
    assert moe_speed.main(["--layers", "1", "--new-tokens", "2", "--prefill-tokens", "8", "--reps", "1",
                           "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["runs"][0]["rows"]
    assert [r["experts"] for r in rows] == [64, 48, 32]
    assert rows[0]["decode_ratio"] == 1.0 and rows[2]["prefill_limit"] > rows[1]["prefill_limit"] > 1.0
    assert all(abs(r["decode_limit"] - 1.0) < 0.05 for r in rows)  # a token still reads its top-k experts
    assert "| 50% | 32 |" in out.with_suffix(".md").read_text()
