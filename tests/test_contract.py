"""The bad-input contract, command by command: one line on stderr naming the key, flag or path, exit code 2,
and nothing written (no new file anywhere, earlier results untouched).

Each case is a command line with placeholders for files the fixture lays out; `{t}` is a fresh directory
for the case's outputs.
"""

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

LONG = "x" * 300


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs shared by every case: a tiny checkpoint, broken checkpoints, bad data files, a fake run."""
    from prunetune.builtin.tiny import tiny_model

    w = tmp_path_factory.mktemp("world")
    model, tok = tiny_model("llama")
    model.save_pretrained(w / "llama")
    tok.save_pretrained(w / "llama")
    (w / "gpt2").mkdir()
    (w / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    (w / "corrupt").mkdir()
    (w / "corrupt" / "config.json").write_text("{not json")
    (w / "broken").mkdir()
    (w / "broken" / "config.json").write_text((w / "llama" / "config.json").read_text())
    (w / "broken" / "model.safetensors").write_bytes(b"garbage")
    (w / "pickle").mkdir()
    (w / "pickle" / "config.json").write_text((w / "llama" / "config.json").read_text())
    (w / "pickle" / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
    _doctored(w, "missing", lambda sd: sd.pop("model.layers.1.mlp.down_proj.weight"))
    _doctored(w, "unexpected", lambda sd: sd.update({"model.layers.9.mlp.up_proj.weight": sd["lm_head.weight"].clone()}))
    _doctored(w, "mismatched", lambda sd: sd.update({"model.norm.weight": sd["model.norm.weight"][:-1].clone()}))
    (w / "afile").write_text("a file, not a directory")
    (w / "nonutf8.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    (w / "malformed.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    (w / "notobj.jsonl").write_text("[1, 2]\n")
    (w / "empty.jsonl").write_text("")
    (w / "corrupt.parquet").write_bytes(b"PAR1 not really")
    (w / "fake.gguf").write_bytes(b"GGUF garbage")
    (w / "empty.yaml").write_text("")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "bad.yaml").write_text("model: [1\n")
    (w / "garbage_config.json").write_text("{oops")
    (w / "notype_config.json").write_text('{"hidden_size": 8}')
    (w / "completions.jsonl").write_text('{"id": "arith-test-0-0", "completion": "#### 3"}\n')
    (w / "noid.jsonl").write_text('{"completion": "#### 3"}\n')
    (w / "badid.jsonl").write_text('{"id": "no-such-problem", "completion": "#### 3"}\n')
    (w / "exists").mkdir()
    (w / "exists" / "keep.txt").write_text("earlier result")
    (w / "notrun").mkdir()
    (w / "notrun" / "keep.txt").write_text("not a run")
    run = w / "run"
    (run / "baseline").mkdir(parents=True)
    (run / "baseline" / "eval.json").write_text(
        '{"params": 10, "non_embedding_params": 8, "metrics": {"arith": {"accuracy": 0.5}}}'
    )
    (run / "metrics.jsonl").write_text('{"event": "baseline", "iteration": 0}\n')
    return w


def _doctored(w: Path, name: str, edit) -> None:
    """A copy of the tiny llama whose safetensors `edit` changed (a tensor dropped, added or reshaped)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(w / "llama", w / name)
    sd = load_file(w / name / "model.safetensors")
    edit(sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, w / name / "model.safetensors", metadata={"format": "pt"})


SMOKE = ["smoke"]
CASES = [
    # prune
    ("prune {w}/nope --out {t}/o --mlp-fraction 0.5", "does not exist"),
    ("prune {w}/afile --out {t}/o --mlp-fraction 0.5", "afile"),
    ("prune {w}/gpt2 --out {t}/o --mlp-fraction 0.5", "unsupported model family 'gpt2'"),
    ("prune {w}/corrupt --out {t}/o --mlp-fraction 0.5", "unreadable"),
    ("prune {w}/broken --out {t}/o --mlp-fraction 0.5", "cannot load model"),
    ("prune {w}/pickle --out {t}/o --mlp-fraction 0.5", "pickle"),
    ("prune {w}/missing --out {t}/o --mlp-fraction 0.5", "missing: model.layers.1.mlp.down_proj.weight"),
    ("prune {w}/unexpected --out {t}/o --mlp-fraction 0.5", "unexpected: model.layers.9.mlp.up_proj.weight"),
    ("prune {w}/mismatched --out {t}/o --mlp-fraction 0.5", "mismatched: model.norm.weight"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 1.5", "--mlp-fraction"),
    ("prune {w}/llama --out {t}/o --mlp-neurons -1", "--mlp-neurons"),
    ("prune {w}/llama --out {t}/o --kv-groups -1", "--kv-groups"),
    ("prune {w}/llama --out {t}/o --experts 2", "'llama' is a dense model"),
    ("prune tiny-random-mixtral --out {t}/o --experts 7", "fewer than num_experts_per_tok=2"),
    ("prune tiny-random-mixtral --out {t}/o --expert-neurons 32", "leaves none"),
    ("prune tiny-random-olmoe --out {t}/o --kv-groups 1", "KV groups"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --round-to 0", "--round-to"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --tensor-parallel 0", "--tensor-parallel"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration-samples 0", "--calibration-samples"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --max-length 1", "--max-length"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/nope.jsonl", "--calibration"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/nonutf8.jsonl", "UTF-8"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/malformed.jsonl", "malformed.jsonl:2"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/corrupt.parquet", "corrupt.parquet"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --importance bogus", "unknown MLP scorer 'bogus'"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --importance talyor", "did you mean 'taylor'"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --importance ptl --importance-option order=x", "order"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --importance-option top_n=2", "takes no options"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --layer-ids a,b", "--layer-ids"),
    ("prune {w}/llama --out {w}/afile/o --mlp-fraction 0.5", "not a directory"),
    ("prune {w}/llama --out {t}/" + LONG + " --mlp-fraction 0.5", "too long"),
    ("prune {w}/llama --out {w}/exists --mlp-fraction 0.5", "already exists"),
    ("prune {w}/llama --out {t}/o", "nothing to remove"),
    ("prune {w}/llama --out {t}/o --hidden-fraction 0", "--hidden-fraction"),
    ("prune {w}/llama --out {t}/o --hidden-fraction 1", "--hidden-fraction"),
    ("prune {w}/llama --out {t}/o --hidden-fraction 0.5 --round-to 128", "--hidden-fraction"),
    ("prune {w}/llama --out {t}/o --hidden-fraction 0.5 --hidden-importance bogus", "unknown hidden-channel scorer"),
    # recover
    ("recover {w}/llama --out {t}/o --method bogus --data arith", "unknown recovery method 'bogus'"),
    ("recover {w}/llama --out {t}/o --method sfft --data arith", "did you mean 'sft'"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/nope.jsonl", "does not exist"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/nonutf8.jsonl", "UTF-8"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/malformed.jsonl", "malformed.jsonl:2"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/notobj.jsonl", "JSON object"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/empty.jsonl", "empty"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith learning_rat=1", "did you mean 'learning_rate'"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith max_steps=abc", "max_steps: expected an integer"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith max_steps=0", "max_steps: must be at least 1"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith learning_rate=fast", "learning_rate"),
    ("recover {w}/llama --out {t}/o --method sft --data arith lora.rank=8", "lora.rank"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith --teacher {w}/llama", "--teacher"),
    ("recover {w}/llama --out {t}/o --method distill --data arith", "--teacher"),
    ("recover {w}/llama --out {t}/o --method grpo", "--task"),
    ("recover {w}/llama --out {t}/o --method grpo --task bogus", "unknown task"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith --chunk 1", "--chunk"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith --chunk -1 --chunk-size 4", "--chunk"),
    ("recover {w}/llama --out {w}/afile/o --method cpt --data arith", "not a directory"),
    ("recover {w}/missing --out {t}/o --method cpt --data arith", "missing: model.layers.1.mlp.down_proj.weight"),
    ("recover {w}/llama --out {t}/o --method distill --data arith --teacher {w}/mismatched", "mismatched"),
    ("recover {w}/llama --out {w}/exists --method cpt --data arith", "already exists"),
    # eval
    ("eval {w}/llama", "--tasks"),
    ("eval {w}/llama --tasks bogus", "unknown task"),
    ("eval {w}/llama --tasks arith --limit 0", "--limit"),
    ("eval {w}/llama --tasks arith --max-new-tokens 0", "--max-new-tokens"),
    ("eval {w}/llama --tasks arith --num-samples 0", "--num-samples"),
    ("eval {w}/llama --tasks gsm8k --data {w}/nope.jsonl", "does not exist"),
    ("eval {w}/llama --tasks arith --task-option nokey", "--task-option"),
    ("eval {w}/llama --tasks arith --task-option bogus=1", "does not take that option"),
    ("eval {w}/llama --tasks arith --out {w}/exists", "already exists"),
    ("eval {w}/llama --tasks arith --out {w}/afile/r.json", "not a directory"),
    ("eval {w}/nope --tasks arith", "does not exist"),
    ("eval {w}/llama --tasks arith --task-option think=[<t>,<t>]", "task option think: start and end delimiters"),
    ("eval {w}/llama --tasks arith --task-option think=['',</t>]", "task option think: delimiters must not be empty"),
    ("eval {w}/llama --tasks arith --task-option think=maybe", "task option think"),
    ("eval {w}/llama --tasks gsm_symbolic --task-option enable_thinking=true", "task option enable_thinking"),
    ("eval {w}/llama --tasks gsm_symbolic --task-option enable_thinking=maybe", "enable_thinking"),
    ("eval {w}/missing --tasks arith", "does not match its config.json (missing"),
    ("eval {w}/unexpected --tasks arith --limit 1", "unexpected: model.layers.9"),
    # score
    ("score --task bogus --completions {w}/completions.jsonl", "unknown task"),
    ("score --task arith --completions {w}/nope.jsonl", "does not exist"),
    ("score --task arith --completions {w}/malformed.jsonl", "malformed.jsonl:2"),
    ("score --task arith --completions {w}/noid.jsonl", "needs an id"),
    ("score --task arith --completions {w}/badid.jsonl", "unknown arith example id"),
    ("score --task arith --completions {w}/completions.jsonl --out {w}/exists", "already exists"),
    # inspect, import-gguf
    ("inspect {w}/nope", "does not exist"),
    ("inspect {w}/gpt2", "unsupported model family"),
    ("inspect {w}/corrupt", "unreadable"),
    ("import-gguf {w}/nope.gguf --out {t}/o", "does not exist"),
    ("import-gguf {w}/fake.gguf --out {t}/o", "cannot read GGUF"),
    ("import-gguf {w}/fake.gguf --out {w}/exists", "already exists"),
    # plan, validate
    ("plan {w}/nope.yaml", "does not exist"),
    ("plan {w}/empty.yaml", "must be a mapping"),
    ("plan {w}/list.yaml", "must be a mapping"),
    ("plan {w}/bad.yaml", "not valid YAML"),
    ("plan smoke model_config={w}/garbage_config.json", "model_config"),
    ("plan smoke model_config={w}/notype_config.json", "model_config"),
    ("plan smoke model={w}/corrupt", "unreadable"),
    ("plan nosuchrecipe", "unknown recipe"),
    ("plan smoke --gpus 0", "--gpus"),
    ("plan smoke --gpu tpu", "--gpu: unknown GPU 'tpu'"),
    ("plan smoke --gpu h2000", "did you mean 'h200'"),
    ("plan smoke --gpus 8 --gen-fill 2", "--gen-fill"),
    ("plan smoke --gpus 8 --mfu 0", "--mfu"),
    ("validate smoke seed=abc", "seed: expected an integer"),
    ("validate smoke one_shot=maybe", "one_shot: expected true or false"),
    ("validate smoke iterations=0", "iterations: must be at least 1"),
    ("validate smoke target.keep=1.5", "target.keep: must be less than 1"),
    ("validate smoke schedule.shape=spiral", "schedule.shape: must be one of"),
    ("validate smoke recovery.teacher=uncle", "recovery.teacher"),
    ("validate smoke recovery.config.max_steps=abc", "recovery.config.max_steps: expected an integer"),
    ("validate smoke evaluation.tasks=[]", "evaluation.tasks"),
    ("validate smoke evaluation.think=[a,a]", "evaluation.think: start and end delimiters must differ"),
    ("validate smoke evaluation.think=maybe", "evaluation.think"),
    ("validate smoke evaluation.enable_thinking=maybe", "evaluation.enable_thinking"),
    ("validate smoke gate.task=perplexity gate.max_drop=0.1", "gate.task"),
    ("validate smoke bogus", "key=value"),
    ("validate smoke schedule.hidden.1=64", "schedule.hidden removes 64 of 64"),
    ("validate smoke schedule.hidden.1=4", "hidden_size after pruning (60) is not a multiple of round_to=8"),
    ("validate smoke schedule.hidden.3=8", "schedule.hidden: iteration 3"),
    ("validate smoke prune.hidden_options.site=middle", "prune.hidden_options.site"),
    ("validate smoke prune.mlp_importance=ptl prune.mlp_options.top_n=0", "prune.mlp_options.top_n"),
    ("validate smoke recovery.min_share=0.1", "recovery.min_share needs recovery.total_steps"),
    ("validate smoke recovery.total_steps=40 recovery.min_share=0.5", "recovery.min_share=0.5 x iterations"),
    ("validate smoke recovery.min_share=1.5", "recovery.min_share"),
    ("validate smoke model=tiny-random-gemma2 recovery.config.sharding=fsdp", "tied input/output embeddings"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=split recovery.split=[4,5] recovery.min_share=0.1",
     "drop min_share / final_share"),
    ("validate smoke recovery.final_share=0.5", "recovery.final_share needs recovery.total_steps"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=recovered recovery.tolerance=-1", "recovery.tolerance"),
    ("validate smoke recovery.allocation=recovered", "recovery.allocation: recovered needs recovery.total_steps"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=geometric recovery.growth=0", "recovery.growth"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=geometric recovery.growth=x", "recovery.growth"),
    ("validate smoke recovery.total_steps=9 recovery.min_share=0.4 recovery.final_share=0.7", "leave nothing"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=split recovery.split=[1]", "recovery.split"),
    # run: every input checked before the first write
    ("run smoke output_dir={w}/afile/run", "not a directory"),
    ("run smoke output_dir={t}/" + LONG, "too long"),
    ("run smoke output_dir={t}/run model={w}/broken", "cannot load model"),
    ("run smoke output_dir={t}/run model={w}/pickle", "pickle"),
    ("run smoke output_dir={t}/run model={w}/missing", "missing: model.layers.1.mlp.down_proj.weight"),
    ("run smoke output_dir={w}/notrun --restart", "holds no prunetune run"),
    ("run smoke output_dir={t}/run prune.calibration={w}/nonutf8.jsonl", "UTF-8"),
    ("run smoke output_dir={t}/run recovery.data={w}/malformed.jsonl", "malformed.jsonl:2"),
    ("run smoke output_dir={w}/notrun", "holds no prunetune run"),
    ("run smoke output_dir={t}/run model={w}/llama evaluation.tasks=[gsm_symbolic] evaluation.enable_thinking=true",
     "evaluation.enable_thinking: this tokenizer has no chat template"),
    # report, reference, demo, ls
    ("report {w}/nope", "not a prunetune run"),
    ("report {w}/notrun", "not a prunetune run"),
    ("report {w}/run --compare {w}/nope", "--compare"),
    ("pick {w}/run --max-seconds-per-solved 0", "--max-seconds-per-solved must be positive"),
    ("reference build --out {t}/r --steps 0", "--steps"),
    ("reference build --out {w}/exists --steps 1", "already exists"),
    ("reference eval --n 0", "--n"),
    ("reference eval --model {w}/nope", "does not exist"),
    ("demo seed=abc", "seed: expected an integer"),
    ("demo --recipe {w}/nope.yaml", "does not exist"),
    ("ls --bogus", "unrecognized arguments"),
]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_the_table_is_long_enough():
    assert len(CASES) >= 60 and len({c for c, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("command, message", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, tmp_path, capsys, monkeypatch, command, message):
    monkeypatch.chdir(tmp_path)  # a command that wrongly writes relative paths would show up here
    before = _snapshot(world)
    argv = [a.format(w=world, t=tmp_path) for a in command.split()]
    rc = run_cli(*argv)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(err) == 1 and "error:" in err[0] and message in err[0], err
    assert _snapshot(world) == before
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    assert not os.environ.get("PRUNETUNE_CRASH_AT")
