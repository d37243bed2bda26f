"""The lm-eval bridge (task ``lm_eval``): prompts equal lm-eval's own, every sample scored alone
with the task's filter and metric, options and names checked. Offline: the task under test is a
tiny generate-until YAML (tests/fixtures/lm_eval/) over local JSONL files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("lm_eval")

from harness.errors import BadInput  # noqa: E402
from tasks import lm_eval_bridge, lm_eval_catalogue  # noqa: E402
from tasks.lm_eval_bridge import LmEvalTask, score_samples  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"
ROOT = Path(__file__).parent.parent


def read_jsonl(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def include_path(tmp_path_factory):
    """The fixture YAMLs with absolute data paths (lm-eval hands data_files to datasets as given,
    relative to the working directory) and a private datasets cache."""
    root = tmp_path_factory.mktemp("lm_eval")
    tasks_dir = root / "tasks"
    tasks_dir.mkdir()
    for template in FIXTURES.glob("*.yaml.in"):
        text = template.read_text().replace("@FIXTURES@", str(FIXTURES)).replace("@CACHE@", str(root / "hf_cache"))
        (tasks_dir / template.name[:-len(".in")]).write_text(text)
    return str(tasks_dir)


@pytest.fixture(scope="module")
def task(include_path):
    return LmEvalTask({"name": "tiny_arith", "include_path": include_path})


def lm_eval_task(include_path, name="tiny_arith"):
    """The same task built by lm-eval alone, as its evaluator prepares it (default fewshot seed)."""
    from lm_eval.tasks import TaskManager

    native = TaskManager(include_path=include_path, include_defaults=False).load(name)["tasks"][name]
    native.set_fewshot_seed(seed=1234)
    return native


def test_items_are_the_prompts_lm_eval_builds(task, include_path):
    items = task.items()
    docs = read_jsonl("tiny_arith_test.jsonl")
    assert [i.id for i in items] == [f"lm_eval:tiny_arith/{n}" for n in range(len(docs))]

    native = lm_eval_task(include_path)
    native.build_all_requests()
    contexts = {inst.doc_id: inst.arguments[0] for inst in native.instances}
    assert [i.prefix for i in items] == [contexts[n] for n in range(len(docs))]

    train = read_jsonl("tiny_arith_train.jsonl")
    shots = {f"Question: {r['question']}\nAnswer: {r['answer']}" for r in train}
    for item, doc in zip(items, docs):
        *examples, question = item.prefix.split("\n\n")
        assert question == f"Question: {doc['question']}\nAnswer:"
        assert len(examples) == 2 and set(examples) <= shots  # num_fewshot: 2 from the YAML
        assert item.suffix == doc["answer"] and item.cluster is None
        assert item.meta == {"benchmark": "lm_eval:tiny_arith", "grader": "lm_eval", "answer": doc["answer"],
                             "raw_prompt": True, "until": ["Question:", "</s>"], "max_gen_toks": 64,
                             "doc_index": int(item.id.rsplit("/", 1)[1]), "task": "tiny_arith"}
        json.dumps(item.meta)
    # deterministic: the same prompts from the same object and from a fresh one
    assert [i.prefix for i in task.items()] == [i.prefix for i in items]
    fresh = LmEvalTask({"name": "tiny_arith", "include_path": include_path})
    assert [i.prefix for i in fresh.items()] == [i.prefix for i in items]


def test_num_fewshot_and_seed_options(include_path):
    zero = LmEvalTask({"name": "tiny_arith", "include_path": include_path, "num_fewshot": "0"})
    docs = read_jsonl("tiny_arith_test.jsonl")
    assert [i.prefix for i in zero.items()] == [f"Question: {d['question']}\nAnswer:" for d in docs]
    assert zero.config()["num_fewshot"] == 0

    four = LmEvalTask({"name": "tiny_arith", "include_path": include_path, "num_fewshot": 4})
    assert all(len(i.prefix.split("\n\n")) == 5 for i in four.items())

    seeds = [LmEvalTask({"name": "tiny_arith", "include_path": include_path, "fewshot_seed": s}) for s in range(6)]
    prompts = {tuple(i.prefix for i in t.items()) for t in seeds}
    assert len(prompts) > 1  # the seed picks the few-shot examples
    assert seeds[0].config()["fewshot_seed"] == 0

    with pytest.raises(BadInput, match="num_fewshot='two' is not an integer"):
        LmEvalTask({"name": "tiny_arith", "include_path": include_path, "num_fewshot": "two"})


def rows_for(doc_index, completions):
    return [{"item_id": f"lm_eval:tiny_arith/{doc_index}", "completion": c, "sample": s}
            for s, c in enumerate(completions)]


def test_every_sample_is_scored_alone(task):
    config = task.config()
    # doc 0: gold 5; doc 2: gold 1,500; doc 3: gold -3
    rows = (rows_for(0, ["2 + 3 = 5.\n#### 5", "2 + 3 = 6.\n#### 6", "five", "#### 5", "The answer is 5."])
            + rows_for(2, ["1,200 + 300 = 1,500\n#### 1,500", "#### 1500", "#### $1,500"])
            + rows_for(3, ["#### -3", "#### 3"]))
    got = score_samples(config, rows)
    assert got == [
        (True, "5", "metric exact_match=1.0"),
        (False, "6", "metric exact_match=0.0"),
        (False, None, "metric exact_match=0.0"),    # no '#### <number>': the regex filter's fallback
        (True, "5", "metric exact_match=1.0"),      # a right sample after wrong ones is still right
        (False, None, "metric exact_match=0.0"),    # strict-match needs '#### '
        (True, "1,500", "metric exact_match=1.0"),  # the metric's own regexes_to_ignore drop ','
        (True, "1500", "metric exact_match=1.0"),
        (False, None, "metric exact_match=0.0"),    # strict-match does not allow '$'
        (True, "-3", "metric exact_match=1.0"),
        (False, "3", "metric exact_match=0.0"),
    ]
    # each row alone gives the same answer as in the batch (no state shared between samples)
    assert [score_samples(config, [r])[0] for r in rows] == got
    assert score_samples(config, list(reversed(rows))) == list(reversed(got))


def test_scores_equal_lm_evals_own_scoring_of_one_response(task, include_path):
    """For every filter that works on one response, the bridge's verdict is lm-eval's own: the
    task's filter ensemble and process_results over instances whose single response is the sample."""
    native = lm_eval_task(include_path)
    native.build_all_requests()
    completions = ["#### 5", "So 5.", "#### 24", "it is 24 eggs", "#### 1,500", "$1,500", "#### -3", "minus 3"]
    for filter_name in ("strict-match", "flexible-extract"):
        bridge = LmEvalTask({"name": "tiny_arith", "include_path": include_path, "filter": filter_name})
        config = bridge.config()
        assert config["filter"] == filter_name
        for completion in completions:
            for inst in native.instances:
                inst.resps = [completion]
                inst.filtered_resps = {}
            # task.apply_filters() runs every ensemble; maj@2 cannot run on one response, so run ours
            next(f for f in native._filters if f.name == filter_name).apply(native.instances)
            expected = []
            for inst in sorted(native.instances, key=lambda i: i.doc_id):
                value = native.process_results(inst.doc, [inst.filtered_resps[filter_name]])["exact_match"]
                expected.append(value == 1.0)
            rows = [{"item_id": f"lm_eval:tiny_arith/{n}", "completion": completion} for n in range(4)]
            assert [c for c, _, _ in score_samples(config, rows)] == expected, (filter_name, completion)


def test_flexible_filter_extracts_a_bare_number(include_path):
    config = LmEvalTask({"name": "tiny_arith", "include_path": include_path, "filter": "flexible-extract"}).config()
    got = score_samples(config, rows_for(0, ["The answer is 5.", "I think 6", "no idea"]))
    assert got[0] == (True, "5.", "metric exact_match=1.0")  # the metric ignores the trailing '.'
    assert got[1] == (False, "6", "metric exact_match=0.0")
    assert got[2][0] is False and got[2][1] is None


def test_defaults_and_config(task):
    config = task.config()
    assert json.loads(json.dumps(config)) == config
    assert config["name"] == "lm_eval" and config["task"] == "tiny_arith"
    assert config["metric"] == "exact_match" and config["filter"] == "strict-match"  # the task's first ones
    assert config["num_fewshot"] == 2 and config["fewshot_seed"] == 1234
    assert config["dataset_path"] == "json" and config["dataset_name"] is None
    import lm_eval

    assert config["lm_eval_version"] == lm_eval.__version__
    # the config as stored in a manifest is enough to score
    assert score_samples(json.loads(json.dumps(config)), rows_for(1, ["#### 24"])) == [
        (True, "24", "metric exact_match=1.0")]


def test_bad_rows_are_errors_not_crashes(task):
    rows = [{"item_id": "lm_eval:tiny_arith/0", "completion": "#### 5"},
            {"item_id": "lm_eval:tiny_arith/99", "completion": "#### 5"},
            {"item_id": "lm_eval:other/0", "completion": "#### 5"},
            {"item_id": "lm_eval:tiny_arith/x", "completion": "#### 5"},
            {"item_id": "lm_eval:tiny_arith/1", "completion": None},
            {"completion": "#### 5"},
            {"item_id": "lm_eval:tiny_arith/1", "completion": "#### 24"}]
    got = score_samples(task.config(), rows)
    assert got[0] == (True, "5", "metric exact_match=1.0")
    assert got[-1] == (True, "24", "metric exact_match=1.0")
    for correct, extracted, reason in got[1:-1]:
        assert correct is False and extracted is None and reason.startswith("error: ")
    assert "out of range" in got[1][2] and "not a doc of lm_eval:tiny_arith" in got[2][2]
    assert "not text" in got[4][2]
    # a task that cannot be rebuilt stops the grading (rescore then rewrites nothing)
    broken = dict(task.config(), include_path=str(Path(task.include_path) / "gone"))
    with pytest.raises(BadInput) as err:
        score_samples(broken, rows[:2])
    assert err.value.message.startswith("error: could not rebuild lm-eval task 'tiny_arith'")


def test_option_errors(include_path):
    with pytest.raises(BadInput) as err:
        LmEvalTask({"name": "tiny_arith", "include_path": include_path, "shots": 3})
    assert "shots" in err.value.message
    for valid in ("name", "include_path", "num_fewshot", "metric", "filter"):
        assert valid in err.value.message
    with pytest.raises(BadInput, match="needs a task name"):
        LmEvalTask({})
    with pytest.raises(BadInput, match="not a directory"):
        LmEvalTask({"name": "tiny_arith", "include_path": str(Path(include_path) / "missing")})
    with pytest.raises(BadInput, match=r"no metric 'acc'.*valid: exact_match"):
        LmEvalTask({"name": "tiny_arith", "include_path": include_path, "metric": "acc"}).items()
    with pytest.raises(BadInput, match=r"no filter 'loose'.*strict-match, flexible-extract, maj@2"):
        LmEvalTask({"name": "tiny_arith", "include_path": include_path, "filter": "loose"}).config()
    with pytest.raises(BadInput, match=r"'maj@2'.*several repeats.*strict-match, flexible-extract"):
        LmEvalTask({"name": "tiny_arith", "include_path": include_path, "filter": "maj@2"}).config()


def test_only_single_generate_until_tasks(include_path):
    with pytest.raises(BadInput, match="'tiny_choice' is multiple_choice; only generate-until tasks"):
        LmEvalTask({"name": "tiny_choice", "include_path": include_path})
    with pytest.raises(BadInput, match=r"group 'tiny_group'.*name one task \(tiny_arith, tiny_choice\)"):
        LmEvalTask({"name": "tiny_group", "include_path": include_path})
    # a built-in multiple-choice task is refused from its YAML, before any data is loaded
    with pytest.raises(BadInput, match="'arc_easy' is multiple_choice"):
        LmEvalTask({"name": "arc_easy"})


def test_unknown_name_lists_close_matches():
    with pytest.raises(BadInput) as err:
        LmEvalTask({"name": "gsm8kk"})
    assert "unknown lm-eval task 'gsm8kk'; close matches: gsm8k" in err.value.message
    with pytest.raises(BadInput, match=r"tag 'ai2_arc'.*name one task \(arc_challenge, arc_easy\)"):
        LmEvalTask({"name": "ai2_arc"})


def test_builtin_names_resolve_to_the_file_lm_evals_index_uses():
    """The fast path (a text scan of lm-eval's task YAMLs) finds the same file as lm-eval's full
    index, for YAML tasks, a Python-class task and names defined in several files."""
    index = lm_eval_catalogue.full_task_manager().task_index  # lm-eval's own TaskManager(), built once
    root = lm_eval_catalogue.builtin_tasks_dir()
    for name in ("gsm8k", "gsm8k_cot_self_consistency", "minerva_math_algebra", "squadv2", "arc_easy"):
        hits = lm_eval_catalogue.scan_task_yamls(root, name)
        assert hits and hits[0] == index[name].yaml_path, name
    task = LmEvalTask({"name": "gsm8k"})  # resolves without loading the dataset (the Hub is offline)
    assert task.source == "gsm8k/gsm8k.yaml"


def test_registers_and_imports_cheaply():
    registered = []
    lm_eval_bridge.register_tasks(registered.append)
    assert registered == [LmEvalTask] and LmEvalTask.name == "lm_eval"
    assert LmEvalTask.description and "\n" not in LmEvalTask.description
    code = "import sys, tasks.lm_eval_bridge; print(sorted(m for m in ('lm_eval', 'datasets', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
