"""The reference study's data and settings as options of the existing tasks and interventions:
``olympiadbench.source=simplerl``, ``gpqa_diamond.source=hendrydong``, ``gsm8k.fewshot=K`` and the
``generic`` intervention's rotating scaffolds. Everything reads local files in the Hub datasets'
schemas (nothing is downloaded); the Hub paths are exercised with a stand-in ``datasets`` module."""

import json
import sys
import types

import pytest
from click.testing import CliRunner

from harness.errors import BadInput
from harness.seeding import derive_seed
from harness.types import Arm, Item
from tasks.benchmarks import fixture_path
from tasks.gpqa_diamond import GPQADiamondTask, mc_choices
from tasks.gsm8k import GSM8KTask
from tasks.loading import DataError
from tasks.olympiadbench import OlympiadBenchTask

MC_INSTRUCTION = "Please write your final answer in the form of \\boxed{A}, \\boxed{B}, \\boxed{C}, or \\boxed{D}"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_fixture(name):
    with open(fixture_path(name)) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def fake_datasets(monkeypatch, rows=None, error=None):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if error:
            raise ConnectionError(error)
        return rows

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


# -- OlympiadBench: the study's zwhe99/simplerl-OlympiadBench -------------------------------------

def test_simplerl_fixture_drops_multi_answer_rows_and_config_records_the_rule():
    task = OlympiadBenchTask({"data": "sample", "source": "simplerl"})
    items = task.items()
    rows = read_fixture("olympiadbench_simplerl.jsonl")
    assert len(rows) == 14 and len(items) == 12
    ids = [i.id for i in items]
    assert "olympiadbench/8104" not in ids and "olympiadbench/8108" not in ids  # two answers; is_multiple_answer
    assert ids == [f"olympiadbench/{r['id']}" for r in rows if r["id"] not in (8104, 8108)]
    by = {i.id: i for i in items}
    assert by["olympiadbench/8112"].suffix == "\\frac{5}{36}"
    assert by["olympiadbench/8107"].prefix.startswith("Let $T=4$.\n\nCompute the area")
    assert not any(i.meta["is_multiple_answer"] for i in items)
    config = task.config()
    json.dumps(config, allow_nan=False)
    assert {k: config[k] for k in ("source", "hub_id", "split", "config", "expected_count", "n_loaded",
                                   "first_rows", "drop_multi_answer", "n_dropped", "data")} == {
        "source": "simplerl", "hub_id": "zwhe99/simplerl-OlympiadBench", "split": "test", "config": None,
        "expected_count": 220, "n_loaded": 12, "first_rows": 300, "drop_multi_answer": True, "n_dropped": 2,
        "data": "package:reasoning/olympiadbench_simplerl.jsonl"}


def test_default_source_is_hothan_and_unchanged():
    task = OlympiadBenchTask({"data": "sample"})
    assert len(task.items()) == 12
    config = task.config()
    assert config["source"] == "hothan" and config["hub_id"] == "Hothan/OlympiadBench"
    assert config["split"] == "train" and config["config"] == "OE_TO_maths_en_COMP" and "first_rows" not in config
    assert "olympiadbench/9004" in {i.id for i in task.items()}  # hothan keeps multi-answer problems
    with pytest.raises(BadInput, match="source='nope'; valid: hothan, simplerl"):
        OlympiadBenchTask({"source": "nope"})


def test_simplerl_rule_takes_the_first_300_rows_then_drops(tmp_path):
    rows = []
    for n in range(400):
        answers = ["$1$", "$2$"] if n % 5 == 0 else [f"${n}$"]
        rows.append({"id": 5000 + n, "question": f"Compute {n}.", "final_answer": answers,
                     "is_multiple_answer": n % 7 == 0, "context": None})
    path = write_jsonl(tmp_path / "simplerl.jsonl", rows)
    task = OlympiadBenchTask({"data": str(path), "source": "simplerl"})
    items = task.items()
    want = [n for n in range(300) if n % 5 and n % 7]
    assert [i.id for i in items] == [f"olympiadbench/{5000 + n}" for n in want]
    assert task.config()["n_dropped"] == 300 - len(want)
    # the hothan source reads the same file whole
    assert len(OlympiadBenchTask({"data": str(path)}).items()) == 400


def test_simplerl_accepts_problem_answer_columns_and_rows_without_ids(tmp_path):
    rows = [{"problem": "Compute $1+1$.", "answer": "$2$"},
            {"problem": "Solve it.", "answer": ["$1$", "$3$"]},  # two answers: dropped
            {"problem": "Compute $2+3$.", "answer": "5"}]
    path = write_jsonl(tmp_path / "plain.jsonl", rows)
    items = OlympiadBenchTask({"data": str(path), "source": "simplerl"}).items()
    assert [(i.id, i.prefix, i.suffix) for i in items] == [("olympiadbench/test-0000", "Compute $1+1$.", "2"),
                                                           ("olympiadbench/test-0002", "Compute $2+3$.", "5")]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q?"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing column 'final_answer' or 'answer'"):
        OlympiadBenchTask({"data": str(bad), "source": "simplerl"}).items()


def test_simplerl_hub_id_split_and_count_warning(monkeypatch, capsys):
    calls = fake_datasets(monkeypatch, rows=read_fixture("olympiadbench_simplerl.jsonl"))
    task = OlympiadBenchTask({"source": "simplerl"})
    assert len(task.items()) == 12
    assert calls == [("zwhe99/simplerl-OlympiadBench", None, "test")]
    err = capsys.readouterr().err
    assert "loaded 12 rows" in err and "expected 220" in err
    assert task.config()["data"] == "zwhe99/simplerl-OlympiadBench"
    OlympiadBenchTask({"source": "simplerl", "split": "train", "config": "x"}).items()
    assert calls[-1] == ("zwhe99/simplerl-OlympiadBench", "x", "train")  # explicit split/config win


# -- GPQA-Diamond: the study's hendrydong/gpqa_diamond_mc -------------------------------------------

def test_hendrydong_fixture_keeps_the_choice_order_and_boxed_gold():
    rows = read_fixture("gpqa_diamond_mc.jsonl")
    task = GPQADiamondTask({"data": "sample", "source": "hendrydong"})
    items = task.items()
    assert [i.id for i in items] == [f"gpqa_diamond/test-{n:04d}" for n in range(12)]
    for item, row in zip(items, rows):
        assert item.prefix == row["problem"].replace(MC_INSTRUCTION, "").strip()  # the options as given
        assert "Please write" not in item.prefix and item.prefix.endswith(f"(D) {item.meta['choices'][3]}")
        assert item.suffix == row["solution"][len("\\boxed{")] and item.meta["grader"] == "choice"
        assert item.meta["correct_answer"] == item.meta["choices"]["ABCD".index(item.suffix)]
        assert item.meta["domain"] == row["domain"] and "choice_order" not in item.meta
    assert len({i.suffix for i in items}) == 4
    config = task.config()
    assert config["source"] == "hendrydong" and config["hub_id"] == "hendrydong/gpqa_diamond_mc"
    assert config["split"] == "test" and config["config"] is None and config["shuffle_seed"] is None
    assert config["expected_count"] == 198 and config["data"] == "package:reasoning/gpqa_diamond_mc.jsonl"
    with pytest.raises(BadInput, match="shuffle_seed applies to source=idavidrein"):
        GPQADiamondTask({"source": "hendrydong", "shuffle_seed": "1"})
    assert GPQADiamondTask({"data": "sample"}).config()["source"] == "idavidrein"


def test_hendrydong_parsing_is_lenient_about_labels_but_not_the_gold(tmp_path):
    rows = [{"problem": "Which?\n\nA. red\nB. green\nC. blue\nD. black\n\n" + MC_INSTRUCTION, "solution": "C"},
            {"problem": "Pick one: none of the labels are on their own lines.", "solution": "The answer is \\boxed{b}"},
            {"problem": "Q?\n(A) 1\n(B) 2\n(C) 3\n(D) 4", "solution": "\\boxed{E}"}]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    with pytest.raises(DataError, match=r"mc.jsonl:3: 'solution' .* holds no choice letter"):
        GPQADiamondTask({"data": str(path), "source": "hendrydong"}).items()
    write_jsonl(path, rows[:2])
    first, second = GPQADiamondTask({"data": str(path), "source": "hendrydong"}).items()
    assert first.meta["choices"] == ["red", "green", "blue", "black"] and first.suffix == "C"
    assert first.prefix == "Which?\n\nA. red\nB. green\nC. blue\nD. black"
    assert second.meta["choices"] is None and second.meta["correct_answer"] is None and second.suffix == "B"
    assert mc_choices("(A) x\n(B) y\n(C) z") is None


def test_hendrydong_is_not_gated(monkeypatch):
    calls = fake_datasets(monkeypatch, error="offline")
    with pytest.raises(DataError) as exc:
        GPQADiamondTask({"source": "hendrydong"}).items()
    assert calls == [("hendrydong/gpqa_diamond_mc", None, "test")]
    assert "gated" not in exc.value.message and "--task-option data=PATH" in exc.value.message
    with pytest.raises(DataError, match="gated"):
        GPQADiamondTask().items()


# -- GSM8K few-shot ------------------------------------------------------------------------------

class _TextBackend:
    """encode() keeps the text, so build_prompt's result is the prompt string itself."""

    def encode(self, text):
        return text

    def chat_prompt(self, messages):
        return "<chat>" + messages[0]["content"]


def test_gsm8k_fewshot_prefix_carries_the_packaged_shots():
    plain = GSM8KTask({"data": "sample"}).items()
    task = GSM8KTask({"data": "sample", "fewshot": "2"})
    items = task.items()
    shots = read_fixture("gsm8k_shots.jsonl")
    assert [i.id for i in items] == [i.id for i in plain] and [i.suffix for i in items] == [i.suffix for i in plain]
    item = items[0]
    assert item.prefix.startswith(shots[0]["question"] + "\n\nSolution: ")
    assert f"\n\nProblem: {shots[1]['question']}\n\nSolution: " in item.prefix
    assert shots[2]["question"] not in item.prefix and "<<" not in item.prefix and "####" not in item.prefix
    assert item.prefix.endswith(f"\\boxed{{35}}.\n\nProblem: {plain[0].prefix}")
    assert item.prefix.count("The final answer is \\boxed{") == 2
    assert item.meta["fewshot"] == 2 and item.meta["question"] == plain[0].prefix
    assert item.meta["fewshot_data"] == "package:reasoning/gsm8k_shots.jsonl" and not item.meta.get("raw_prompt")
    config = task.config()
    assert config["fewshot"] == 2 and config["fewshot_data"] == "package:reasoning/gsm8k_shots.jsonl"
    assert GSM8KTask().config()["fewshot"] == 0 and GSM8KTask().config()["fewshot_data"] is None


def test_gsm8k_fewshot_prompt_reads_as_solved_problems_then_the_item():
    from plugins.evals.reasoning import INSTRUCTION, build_prompt

    item = GSM8KTask({"data": "sample", "fewshot": "2"}).items()[0]
    arm = Arm(name="a", model="random:tiny-qwen3")
    text, stops = build_prompt(_TextBackend(), arm, item, "plain")
    assert text.startswith("Problem: A farmer collects 36 eggs") and text.count("Problem: ") == 3
    assert text.endswith(f"Problem: {item.meta['question']}\n\n{INSTRUCTION['math']}\n\nSolution:")
    assert "\nProblem:" in stops  # a base model's next invented problem still ends the completion
    chat, _ = build_prompt(_TextBackend(), arm, item, "chat")
    assert chat.startswith("<chat>A farmer collects") and chat.endswith(INSTRUCTION["math"])


def test_gsm8k_fewshot_from_a_local_train_file(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?",
         "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
        {"question": "A box holds 12 pens. How many pens are in 2 boxes?",
         "answer": "There are 12 * 2 = <<12*2=24>>24 pens.\n#### 24"},
        {"question": "Unused third row?", "answer": "#### 1"}])
    task = GSM8KTask({"data": "sample", "fewshot": "2", "fewshot_data": str(train)})
    item = task.items()[0]
    assert item.prefix.startswith("Ann has 3 apples and buys 4 more. How many apples does she have?\n\n"
                                  "Solution: She has 3 + 4 = 7 apples.\nThe final answer is \\boxed{7}.\n\n"
                                  "Problem: A box holds 12 pens.")
    assert "Unused third row" not in item.prefix
    assert item.meta["fewshot_data"] == str(train) == task.config()["fewshot_data"]
    with pytest.raises(DataError, match="fewshot=4 needs 4 rows, the file has 3"):
        GSM8KTask({"data": "sample", "fewshot": "4", "fewshot_data": str(train)}).items()
    with pytest.raises(DataError, match="is item 'gsm8k/test-0000' itself"):
        GSM8KTask({"data": "sample", "fewshot": "1", "fewshot_data": fixture_path("gsm8k.jsonl")}).items()
    with pytest.raises(BadInput, match="fewshot_data is given but fewshot is 0"):
        GSM8KTask({"fewshot_data": str(train)})
    with pytest.raises(BadInput, match="fewshot='9' must be in"):
        GSM8KTask({"fewshot": "9"})
    with pytest.raises(DataError, match="fewshot=5 needs 5 rows"):
        GSM8KTask({"data": "sample", "fewshot": "5"}).items()  # 4 packaged shots


# -- generic thoughts: rotating neutral scaffolds ------------------------------------------------

def _ctx(options, seed=0, arm="tiny"):
    backend = types.SimpleNamespace(encode=lambda text: [ord(c) for c in text])
    return types.SimpleNamespace(config={"seed": seed, "options": options}, backend=backend,
                                 seed=lambda *parts: derive_seed(seed, arm, *parts))


ITEMS = [Item(f"i{n}", f"prefix {n}", "suffix") for n in range(6)]


def test_packaged_scaffolds_are_a_small_neutral_set():
    from plugins.interventions.generic import GenericThought, mean_words, packaged_scaffolds

    scaffolds = packaged_scaffolds()
    assert 4 <= len(scaffolds) <= 6 and len(set(scaffolds)) == len(scaffolds)
    assert 10 <= mean_words(scaffolds) <= 13 and mean_words(scaffolds) == pytest.approx(11.6)
    assert f"mean {mean_words(scaffolds):.1f} words" in GenericThought.description
    assert "\n" not in GenericThought.description


def test_scaffold_per_item_and_sample_by_seed():
    from plugins.interventions.generic import GenericThought, packaged_scaffolds

    scaffolds = packaged_scaffolds()
    ctx = _ctx({})
    out = GenericThought().thoughts(ctx, ITEMS, 4, {})
    for item in ITEMS:
        want = [scaffolds[derive_seed(0, "generic", item.id, s) % len(scaffolds)] for s in range(4)]
        assert [t.text for t in out[item.id]] == want
        assert all(t.token_ids == [ord(c) for c in t.text] for t in out[item.id])
    used = {t.text for ts in out.values() for t in ts}
    assert len(used) > 1 and used <= set(scaffolds)
    other_arm = GenericThought().thoughts(_ctx({}, arm="another"), ITEMS, 4, {})
    assert {k: [t.text for t in v] for k, v in other_arm.items()} == {k: [t.text for t in v] for k, v in out.items()}
    again = GenericThought().thoughts(_ctx({}), ITEMS, 4, {})
    assert {k: [t.text for t in v] for k, v in again.items()} == {k: [t.text for t in v] for k, v in out.items()}
    other = GenericThought().thoughts(_ctx({}, seed=1), ITEMS, 4, {})
    assert [t.text for v in other.values() for t in v] != [t.text for v in out.values() for t in v]


def test_generic_thought_text_and_generic_thoughts_file(tmp_path):
    from plugins.interventions.generic import GenericThought

    one = GenericThought().thoughts(_ctx({"generic_thought": "Just go on."}), ITEMS, 3, {})
    assert {t.text for v in one.values() for t in v} == {"Just go on."}
    file = tmp_path / "mine.txt"
    file.write_text("# my scaffolds\nFirst scaffold here.\n\n  Second one.  \nThird.\n", encoding="utf-8")
    mine = GenericThought().thoughts(_ctx({"generic_thoughts": str(file)}), ITEMS, 4, {})
    assert {t.text for v in mine.values() for t in v} <= {"First scaffold here.", "Second one.", "Third."}
    with pytest.raises(BadInput, match="not both"):
        GenericThought().thoughts(_ctx({"generic_thought": "x", "generic_thoughts": str(file)}), ITEMS, 1, {})
    with pytest.raises(BadInput, match="generic_thoughts=.*cannot read it"):
        GenericThought().thoughts(_ctx({"generic_thoughts": str(tmp_path / "nope.txt")}), ITEMS, 1, {})
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(BadInput, match="no scaffold thoughts"):
        GenericThought().thoughts(_ctx({"generic_thoughts": str(tmp_path / "empty.txt")}), ITEMS, 1, {})
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8"):
        GenericThought().thoughts(_ctx({"generic_thoughts": str(tmp_path / "latin1.txt")}), ITEMS, 1, {})


def test_probe_run_records_each_samples_scaffold(tmp_path):
    pytest.importorskip("torch")
    from harness.cli import cli

    file = tmp_path / "scaffolds.txt"
    file.write_text("Keep going.\nWrite the next part.\nContinue as before.\n")
    args = ["run", "--plugin", "thought_probe", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet",
            "--samples", "3", "--limit", "3", "--thought-max-tokens", "4", "--suffix-max-tokens", "4",
            "--intervention", "generic"]
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [*args, "--option", f"generic_thoughts={file}", "--out", str(out)])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(records) == 9 and {r["thought"] for r in records} <= set(file.read_text().split("\n"))
    thoughts = [json.loads(line) for line in open(out / "thoughts.jsonl")]
    assert {(t["item_id"], t["sample"]): t["text"] for t in thoughts} == \
           {(r["item_id"], r["sample"]): r["thought"] for r in records}
    missing = tmp_path / "missing-run"
    res = CliRunner().invoke(cli, [*args, "--option", f"generic_thoughts={tmp_path / 'nope.txt'}",
                                   "--out", str(missing)])
    assert res.exit_code == 2 and "generic_thoughts=" in res.output and not missing.exists()
