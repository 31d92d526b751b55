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
    (w / "notext.jsonl").write_text('{"text": "ok"}\n\n{"body": "no text field"}\n')
    (w / "number.jsonl").write_text('{"text": "ok"}\n7\n')
    (w / "deep.yaml").write_text("model: " + "[" * 200 + "]" * 200 + "\n")
    (w / "bomb.yaml").write_text("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")))
    (w / "dup.yaml").write_text("model: reference\niterations: 2\niterations: 3\n")
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
    _runs(w)
    (w / "badhistory").mkdir()
    for f in (w / "llama").iterdir():
        os.link(f, w / "badhistory" / f.name)
    (w / "badhistory" / "prunetune_history.json").write_text('{"not": "a list"}')
    (w / "dangling").symlink_to(w / "nowhere")
    (w / "exists.predictions").mkdir()
    (w / "r.json").mkdir()  # a results path that is a directory
    run = w / "run"
    (run / "baseline").mkdir(parents=True)
    (run / "baseline" / "eval.json").write_text(
        '{"params": 10, "non_embedding_params": 8, "metrics": {"arith": {"accuracy": 0.5}}}'
    )
    (run / "metrics.jsonl").write_text('{"event": "baseline", "iteration": 0}\n')
    return w


def _runs(w: Path) -> None:
    """Run directories a kill, a full disk or a hand edit left in a state no run writes: r_<what is wrong>."""
    import json

    from prunetune.loop.recipe import dump_recipe, load_recipe

    recipe = dump_recipe(load_recipe("smoke"))
    ev = {"params": 10, "non_embedding_params": 8, "metrics": {"arith": {"accuracy": 0.5}}}
    state = {"completed": 1, "queue": [], "recovery_steps": 2, "retries": 0}
    good = {
        "recipe.yaml": recipe,
        "metrics.jsonl": '{"event": "baseline", "iteration": 0}\n{"event": "eval", "iteration": 1}\n',
        "baseline/eval.json": json.dumps(ev),
        "iteration_01/state/eval.json": json.dumps({**ev, "iteration": 1}),
        "iteration_01/state/loop_state.json": json.dumps(state),
        "family/keep_0.90/state/eval.json": json.dumps({**ev, "iteration": 1, "keep": 0.9, "kept": 0.8}),
    }
    bad = {
        "state_notjson": {"iteration_01/state/loop_state.json": '{"completed": 1,'},
        "state_list": {"iteration_01/state/loop_state.json": "[1, 2]"},
        "state_completed": {"iteration_01/state/loop_state.json": json.dumps({**state, "completed": "one"})},
        "state_retries": {"iteration_01/state/loop_state.json": json.dumps({**state, "retries": -1})},
        "state_queue": {"iteration_01/state/loop_state.json": json.dumps({**state, "queue": [3]})},
        "eval_nometrics": {"iteration_01/state/eval.json": json.dumps({"params": 10, "non_embedding_params": 8, "iteration": 1})},
        "eval_accuracy": {"iteration_01/state/eval.json": json.dumps({**ev, "iteration": 1, "metrics": {"arith": {"accuracy": "high"}}})},
        "base_notjson": {"baseline/eval.json": "{oops"},
        "base_zero": {"baseline/eval.json": json.dumps({**ev, "non_embedding_params": 0})},
        "base_nonutf8": {"baseline/eval.json": b'{"params": "\xe9"}'},
        "metrics_list": {"metrics.jsonl": '[1, 2]\n{"event": "eval", "iteration": 1}\n'},
        "metrics_noiter": {"metrics.jsonl": '{"event": "eval"}\n{"event": "eval", "iteration": 1}\n'},
        "metrics_number": {"metrics.jsonl": '7\n{"event": "eval", "iteration": 1}\n'},
        "recipe_corrupt": {"recipe.yaml": "model: [1\n"},
        "recipe_list": {"recipe.yaml": "- 1\n"},
        "summary_notjson": {"summary.json": "{"},
        "summary_family": {"summary.json": json.dumps({"family": [{"dir": "x"}]})},
        "family_nokeep": {"family/keep_0.90/state/eval.json": json.dumps({**ev, "iteration": 1})},
        "family_notjson": {"family/keep_0.90/state/eval.json": "nope"},
        "noiter": {"iteration_01/state/eval.json": None, "iteration_01/state/loop_state.json": None,
                   "family/keep_0.90/state/eval.json": None},
        "report_md_dir": {"report.md/x": "a directory where the report goes"},
    }
    for name, changes in bad.items():
        for rel, text in {**good, **changes}.items():
            if text is None:
                continue
            f = w / f"r_{name}" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(text) if isinstance(text, bytes) else f.write_text(text)


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
    # run: what a run wrote is read as untrusted input, before anything is written
    ("run smoke output_dir={w}/r_state_notjson", "loop_state.json' is not valid JSON"),
    ("run smoke output_dir={w}/r_state_list", "expected a JSON object, got list"),
    ("run smoke output_dir={w}/r_state_completed", "'completed' has the wrong type"),
    ("run smoke output_dir={w}/r_state_retries", "'retries' has the wrong type"),
    ("run smoke output_dir={w}/r_state_queue", "'queue' has the wrong type"),
    ("run smoke output_dir={w}/r_eval_nometrics", "'metrics' is missing"),
    ("run smoke output_dir={w}/r_eval_accuracy", "'metrics' has the wrong type"),
    ("run smoke output_dir={w}/r_base_notjson", "the run measures it again"),
    ("run smoke output_dir={w}/r_base_zero", "'non_embedding_params' is 0"),
    ("run smoke output_dir={w}/r_base_nonutf8", "not UTF-8"),
    ("run smoke output_dir={w}/r_metrics_list", "metrics.jsonl:1: expected a JSON object, got list"),
    ("run smoke output_dir={w}/r_metrics_noiter", "metrics.jsonl:1: 'iteration' is missing"),
    ("run smoke output_dir={w}/r_metrics_number", "metrics.jsonl:1: expected a JSON object, got int"),
    ("run smoke output_dir={w}/r_recipe_corrupt", "not valid YAML"),
    ("run smoke output_dir={w}/r_recipe_list", "must be a mapping"),
    ("run smoke output_dir={w}/afile", "afile' is not a directory"),
    ("run smoke output_dir={w}/dangling", "symbolic link to nothing"),
    # report, pick: the same files, the same reader
    ("report {w}/r_base_notjson", "baseline/eval.json' is not valid JSON"),
    ("report {w}/r_eval_nometrics", "iteration_01' (the run redoes that iteration)"),
    ("report {w}/r_metrics_list", "metrics.jsonl:1"),
    ("report {w}/r_metrics_noiter", "'iteration' is missing"),
    ("report {w}/r_summary_notjson", "summary.json' is not valid JSON"),
    ("report {w}/r_summary_family", "'family' is not a list of family members"),
    ("report {w}/r_recipe_corrupt", "not valid YAML"),
    ("report {w}/r_report_md_dir", "is a directory, not a file"),
    ("pick {w}/r_family_nokeep --min-accuracy 0.1", "'keep' / 'kept' missing"),
    ("pick {w}/r_family_notjson --min-accuracy 0.1", "keep_0.90/state/eval.json' is not valid JSON"),
    ("pick {w}/r_noiter --min-accuracy 0.1", "no accepted iteration yet"),
    ("pick {w}/r_base_zero --min-accuracy 0.1", "'non_embedding_params' is 0"),
    ("pick {w}/notrun --min-accuracy 0.1", "not a prunetune run directory"),
    ("pick {w}/afile --min-accuracy 0.1", "is a file, not a run directory"),
    ("pick {w}/nope --max-params 10", "does not exist"),
    # a model's history is read before the work, not when the output is written
    ("prune {w}/badhistory --out {t}/o --mlp-fraction 0.5", "prunetune_history.json': expected a JSON list"),
    ("recover {w}/badhistory --out {t}/o --method cpt --data arith", "prunetune_history.json"),
    # outputs, derived ones included, checked before the work
    ("prune {w}/llama --out {w}/dangling --mlp-fraction 0.5", "symbolic link to nothing"),
    ("recover {w}/llama --out {w}/dangling --method cpt --data arith", "symbolic link to nothing"),
    ("eval {w}/llama --tasks arith --out {w}/exists.json", "its predictions directory"),
    ("eval {w}/llama --tasks arith --out {w}/r.json", "already exists"),
    ("eval {w}/llama --tasks arith --out /proc/prunetune.json", "cannot write in '/proc'"),
    ("prune {w}/llama --out /proc/o --mlp-fraction 0.5", "cannot write in '/proc'"),
    ("score --task arith --completions {w}/completions.jsonl --out {w}/exists.json", "its predictions directory"),
    ("score --task arith --completions {w}/completions.jsonl --out {w}/dangling", "symbolic link"),
    ("run smoke output_dir=/proc/prunetune-run", "cannot write in '/proc'"),
    ("import-gguf {w}/fake.gguf --out {w}/dangling", "symbolic link"),
    # numbers: every one bounded where it is read (typed config and flags alike)
    # options that would silently do nothing
    ("validate smoke recovery.allocation=geometric", "recovery.allocation: geometric needs recovery.total_steps"),
    ("plan smoke recovery.allocation=split recovery.split=[3,4]", "recovery.allocation: split needs"),
    ("run smoke output_dir={t}/run recovery.allocation=recovered", "which is not set"),
    ("validate smoke schedule.mlp_iterations=[]", "schedule.mlp_iterations: [] cuts no MLP neurons"),
    ("plan smoke schedule.mlp_iterations=[] target.keep=0.6", "needs the MLP width cut"),
    ("validate smoke seed=-1", "seed: must be at least 0"),
    ("validate smoke seed=4294967296", "seed: must be at most 4294967295"),
    ("validate smoke iterations=1001", "iterations: must be at most 1000"),
    ("validate smoke iterations=" + "9" * 40, "iterations: must be at most"),
    ("validate smoke schedule.round_to=" + "1" + "0" * 30, "schedule.round_to"),
    ("validate smoke recovery.total_steps=" + "9" * 20, "recovery.total_steps"),
    ("validate smoke recovery.total_steps=9 recovery.allocation=geometric recovery.growth=1e300", "recovery.growth"),
    ("validate smoke evaluation.batch_size=9223372036854775808", "evaluation.batch_size"),
    ("validate smoke prune.max_length=99999999999", "prune.max_length"),
    ("validate smoke recovery.config.seed=-5", "recovery.config.seed"),
    ("validate smoke schedule.mlp_iterations=[1,99999999999999]", "schedule.mlp_iterations[1]"),
    ("plan smoke --gpus 99999999999999999999999999999", "--gpus"),
    ("plan smoke --gpus 8 --gen-speedup inf", "--gen-speedup"),
    ("plan smoke --gpus 8 iterations=0", "iterations: must be at least 1"),
    ("validate smoke --bogus iterations=2", "unrecognized arguments: --bogus"),
    ("plan smoke --gpus 8 --tokens-per-record 1" + "0" * 25, "--tokens-per-record"),
    ("eval {w}/llama --tasks arith --limit 1" + "0" * 25, "--limit"),
    ("eval {w}/llama --tasks arith --seed -1", "--seed"),
    ("eval {w}/llama --tasks arith --batch-size 9223372036854775808", "--batch-size"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --seed 4294967296", "--seed"),
    ("pick {w}/run --max-params 1" + "0" * 30, "--max-params"),
    ("reference eval --n 1" + "0" * 30, "--n"),
    ("validate smoke export.keeps=[0.801,0.799]", "both be written as family/keep_0.80"),
    ("validate smoke target.keep=0.5 export.keeps=[0.3]", "below target.keep=0.5"),
    ("validate smoke iterations=4 recovery.total_steps=3", "fewer than iterations=4"),
    # task options typed per task
    ("eval {w}/llama --tasks arith --task-option min_steps=abc", "option min_steps: expected an integer"),
    ("eval {w}/llama --tasks arith --task-option size=0", "option size: must be at least 1"),
    ("eval {w}/llama --tasks arith --task-option max_number=-4", "option max_number: must be at least 1"),
    ("eval {w}/llama --tasks humaneval --task-option chat=maybe", "option chat: expected true or false"),
    ("eval {w}/llama --tasks humaneval --task-option workers=0", "option workers"),
    ("validate smoke evaluation.task_options.arith.size=-1", "option size"),
    # records of the wrong shape, named file:line
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/notext.jsonl", "notext.jsonl:3: no field 'text'"),
    ("prune {w}/llama --out {t}/o --mlp-fraction 0.5 --calibration {w}/number.jsonl", "number.jsonl:2"),
    ("recover {w}/llama --out {t}/o --method cpt --data {w}/number.jsonl", "number.jsonl:2"),
    ("eval {w}/llama --tasks perplexity --data {w}/notext.jsonl", "notext.jsonl:3: no field 'text'"),
    # user text is no format string; recipes are small files
    ("recover {w}/llama --out {t}/o --method cpt --data arith template=Q:{{", "template: Single"),
    ("recover {w}/llama --out {t}/o --method cpt --data arith template={{0}}", "is not a record field name"),
    ("validate {w}/deep.yaml", "nested too deeply"),
    ("validate {w}/bomb.yaml", "expands to more than"),
    ("validate {w}/dup.yaml", "key 'iterations' is given twice"),
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
