"""The `arith` task: examples from the generator, the training prompt format, exact-match scoring."""

from prunetune.builtin import arith
from prunetune.tasks import get_task
from prunetune.tasks.task import Task


def test_registered_and_follows_protocol():
    task = get_task("arith")
    assert isinstance(task, Task) and task.name == "arith"
    assert "\nQuestion:" in task.stop


def test_examples_come_from_the_generator_split():
    task = get_task("arith")
    test = task.examples("test", limit=50)
    from prunetune.builtin.reference import DATA_OPTIONS

    recs = arith.generate_problems(50, split="test", seed=0, **DATA_OPTIONS)
    assert [e.prompt for e in test] == [r["question"] for r in recs]
    assert [e.target for e in test] == [str(r["final"]) for r in recs]
    assert test[0].meta["solution"] == recs[0]["answer"]
    assert len({e.id for e in test}) == 50
    train = task.examples("train", limit=50)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert len(task.examples("test")) == task.size  # default: a 1000-problem held-out set
    hard = get_task("arith", min_steps=4, max_steps=4).examples("test", limit=5)
    assert all(len(e.meta["spec"]["steps"]) == 4 for e in hard)


def test_prompt_matches_training_format():
    task = get_task("arith")
    ex = task.examples("test", limit=1)[0]
    prompt = task.build_prompt(ex, tokenizer=None)
    assert prompt == f"Question: {ex.prompt}\nAnswer:"
    assert arith.format_text({"question": ex.prompt, "answer": ex.meta["solution"]}).startswith(prompt)


def test_score_extract_and_format():
    task = get_task("arith")
    ex = task.examples("test", limit=1)[0]
    right = " " + ex.meta["solution"]
    wrong = right.rsplit("####", 1)[0] + f"#### {int(ex.target) + 1}"
    assert task.score(ex, right) == 1.0 and task.extract(right) == ex.target
    assert task.score(ex, wrong) == 0.0
    assert task.format_ok(right) and not task.format_ok("12 + 3 = 15")
    assert task.score(ex, "I don't know") == 0.0


def test_defaults_match_the_reference_models_training_setting():
    from prunetune.builtin.reference import DATA_OPTIONS

    options = get_task("arith").options
    assert {k: options[k] for k in DATA_OPTIONS} == DATA_OPTIONS
