import json
import sys
import types

import pytest

from harness.errors import BadInput
from tasks.gpqa_diamond import GPQADiamondTask, choice_order
from tasks.gsm8k import GSM8KTask
from tasks.loading import DataError
from tasks.math500 import Math500Task
from tasks.olympiadbench import OlympiadBenchTask, strip_math

TASKS = (GSM8KTask, Math500Task, GPQADiamondTask, OlympiadBenchTask)
# The reference study's sources of two benchmarks (tests/test_study_data.py checks them in detail)
VARIANTS = ((OlympiadBenchTask, {"source": "simplerl"}), (GPQADiamondTask, {"source": "hendrydong"}),
            (GSM8KTask, {"fewshot": "2"}))


def by_id(items):
    return {i.id: i for i in items}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fixture_rows(cls, options=None):
    from tasks.benchmarks import fixture_path

    with open(fixture_path(cls(options).fixture if options else cls.fixture)) as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.name)
def test_sample_fixture_loads(cls):
    task = cls({"data": "sample"})
    items = task.items()
    assert len(items) == 12
    ids = [i.id for i in items]
    assert len(set(ids)) == 12 and all(i.startswith(cls.name + "/") for i in ids)
    assert ids == [i.id for i in cls({"data": "sample"}).items()]  # stable across loads
    for item in items:
        assert item.prefix and item.suffix and item.cluster is None
        assert item.meta["benchmark"] == cls.name and item.meta["answer"] == item.suffix
        assert item.meta["grader"] == ("choice" if cls is GPQADiamondTask else "math")
        json.dumps(item.meta)  # JSON-able for items.jsonl
    config = task.config()
    json.dumps(config)
    assert config["name"] == cls.name and config["expected_count"] == cls.expected_count
    assert config["n_loaded"] == 12 and config["data"] == f"package:reasoning/{cls.fixture}"


def test_class_attributes_match_the_hub_datasets():
    table = {(c.name, c.hub_id, c.hub_config, c.hub_split, c.expected_count, c.grader) for c in TASKS}
    assert table == {("gsm8k", "openai/gsm8k", "main", "test", 1319, "math"),
                     ("math500", "HuggingFaceH4/MATH-500", None, "test", 500, "math"),
                     ("gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", 198, "choice"),
                     ("olympiadbench", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", 675, "math")}
    for cls in TASKS:
        assert cls.description and "\n" not in cls.description
        config = cls().config()
        assert config["data"] == cls.hub_id and config["split"] == cls.hub_split
        assert config["config"] == cls.hub_config and config["n_loaded"] is None


def test_register_tasks_hooks_register_their_class():
    import tasks.gpqa_diamond
    import tasks.gsm8k
    import tasks.math500
    import tasks.olympiadbench

    got = []
    for module in (tasks.gsm8k, tasks.math500, tasks.gpqa_diamond, tasks.olympiadbench):
        module.register_tasks(got.append)
    assert got == list(TASKS)


def test_gsm8k_golds():
    items = by_id(GSM8KTask({"data": "sample"}).items())
    assert list(items)[:2] == ["gsm8k/test-0000", "gsm8k/test-0001"]
    assert items["gsm8k/test-0000"].suffix == "7"
    assert items["gsm8k/test-0002"].suffix == "1200"  # "#### 1,200"
    assert items["gsm8k/test-0003"].suffix == "-3"
    assert items["gsm8k/test-0004"].suffix == "0.5"
    assert items["gsm8k/test-0007"].suffix == "13350"  # "#### 13,350"
    item = items["gsm8k/test-0010"]
    assert item.suffix == "3.5" and item.prefix.startswith("Stickers cost $0.25 each.")
    assert "<<" not in item.meta["solution"] and "####" not in item.meta["solution"]
    assert GSM8KTask({"data": "sample", "split": "train"}).items()[0].id == "gsm8k/train-0000"


def test_math500_golds_and_meta():
    items = by_id(Math500Task({"data": "sample"}).items())
    first = items["math500/test/algebra/9001.json"]
    assert first.suffix == "\\frac{4}{3}" and first.prefix == "Solve for $x$: $4x - 3 = x + 1$."
    assert first.meta["subject"] == "Algebra" and first.meta["level"] == 2
    golds = {i.suffix for i in items.values()}
    assert {"0.75", "3\\sqrt{2}", "[-2, 4]", "(3, -2)", "13\\text{ cm}", "25\\%", "\\$1.75", "-5",
            "120^\\circ", "\\frac{3\\pi}{4}"} <= golds


def test_olympiadbench_golds_context_and_multi_answer():
    items = by_id(OlympiadBenchTask({"data": "sample"}).items())
    assert items["olympiadbench/9001"].suffix == "\\frac{2}{3}"
    assert items["olympiadbench/9003"].suffix == "(-2,3)"
    assert items["olympiadbench/9006"].suffix == "\\sqrt{3}"
    assert items["olympiadbench/9009"].suffix == "-7"
    multi = items["olympiadbench/9004"]
    assert multi.suffix == "3, -2" and multi.meta["answers"] == ["3", "-2"] and multi.meta["is_multiple_answer"]
    with_context = items["olympiadbench/9007"]
    assert with_context.prefix.startswith("Let $T=5$.\n\nA rectangle has perimeter $4 T$")
    assert not items["olympiadbench/9001"].prefix.startswith("None")
    unit = items["olympiadbench/9012"].meta
    assert unit["unit"] == "$\\mathrm{cm}^{2}$" and unit["answer_type"] == "Numerical"
    assert strip_math("$\\frac{1}{2}$") == "\\frac{1}{2}" and strip_math("$3$ and $5$") == "3 and 5"
    assert strip_math("$\\$5$") == "\\$5"


def test_gpqa_gold_letter_points_at_the_correct_answer():
    rows = {r["Record ID"]: r for r in fixture_rows(GPQADiamondTask)}
    for item in GPQADiamondTask({"data": "sample"}).items():
        row = rows[item.id.removeprefix("gpqa_diamond/")]
        letter = item.suffix
        assert letter in "ABCD" and len(letter) == 1
        k = "ABCD".index(letter)
        assert item.meta["choices"][k] == row["Correct Answer"].strip() == item.meta["correct_answer"]
        assert item.meta["choice_order"][k] == 0 and sorted(item.meta["choice_order"]) == [0, 1, 2, 3]
        originals = [row[c].strip() for c in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                                               "Incorrect Answer 3")]
        assert item.meta["choices"] == [originals[i] for i in item.meta["choice_order"]]
        assert item.prefix.startswith(row["Question"].strip() + "\n\nA) ")
        assert f"\n{letter}) {row['Correct Answer'].strip()}" in item.prefix
        assert item.prefix.endswith(f"D) {item.meta['choices'][3]}")


def test_gpqa_choice_order_is_seeded():
    first = GPQADiamondTask({"data": "sample"}).items()
    again = GPQADiamondTask({"data": "sample", "shuffle_seed": "0"}).items()
    assert [(i.prefix, i.suffix, i.meta["choice_order"]) for i in first] == \
           [(i.prefix, i.suffix, i.meta["choice_order"]) for i in again]
    assert len({tuple(i.meta["choice_order"]) for i in first}) > 1  # not one permutation for all
    assert len({i.suffix for i in first}) > 1
    other = GPQADiamondTask({"data": "sample", "shuffle_seed": "1"}).items()
    assert [i.meta["choice_order"] for i in other] != [i.meta["choice_order"] for i in first]
    assert [i.id for i in other] == [i.id for i in first]
    assert GPQADiamondTask({"shuffle_seed": "1"}).config()["shuffle_seed"] == 1
    assert choice_order(0, "recA") == choice_order(0, "recA")
    assert len({tuple(choice_order(seed, "recA")) for seed in range(10)}) > 1
    with pytest.raises(BadInput, match="shuffle_seed=.x. is not an integer"):
        GPQADiamondTask({"shuffle_seed": "x"})


@pytest.mark.parametrize("cls,options", [*((c, {}) for c in TASKS), *VARIANTS],
                         ids=[c.name + "".join(f"-{v}" for v in o.values()) for c, o in
                              [*((c, {}) for c in TASKS), *VARIANTS]])
def test_parquet_copy_loads_identically(cls, options, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / f"{cls.name}.parquet"
    pd.DataFrame(fixture_rows(cls, options)).to_parquet(path)
    want = cls({"data": "sample", **options}).items()
    got = cls({"data": str(path), **options}).items()
    assert [(i.id, i.prefix, i.suffix, i.cluster, i.meta) for i in got] == \
           [(i.id, i.prefix, i.suffix, i.cluster, i.meta) for i in want]
    assert json.dumps([i.meta for i in got]) == json.dumps([i.meta for i in want])  # plain types, not numpy


MALFORMED = [
    (GSM8KTask, {"question": "What is 2 + 2?", "answer": "2 + 2 = 4"}, r"rows.jsonl:2: .*no '#### <number>'"),
    (GSM8KTask, {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n####  "}, r"rows.jsonl:2: .*nothing after"),
    (GSM8KTask, {"answer": "#### 4"}, r"rows.jsonl:2: missing or empty text column 'question'"),
    (Math500Task, {"problem": "1+1?", "solution": "2", "subject": "Algebra", "level": 1, "unique_id": "test/x/2.json"},
     r"rows.jsonl:2: missing or empty text column 'answer'"),
    (Math500Task, {"problem": "1+1?", "answer": "2"}, r"rows.jsonl:2: missing or empty id column 'unique_id'"),
    (OlympiadBenchTask, {"id": 7, "question": "Compute 1+1.", "final_answer": []}, r"rows.jsonl:2: empty 'final_answer'"),
    (OlympiadBenchTask, {"id": 7, "question": "Compute 1+1.", "final_answer": ["$ $"]}, r"rows.jsonl:2: empty 'final_answer'"),
    (OlympiadBenchTask, {"id": 7, "question": "Compute 1+1."}, r"rows.jsonl:2: missing column 'final_answer'"),
    (GPQADiamondTask, {"Question": "Q?", "Correct Answer": "a", "Incorrect Answer 1": "b", "Incorrect Answer 2": "c",
                       "Record ID": "recB"}, r"rows.jsonl:2: missing or empty text column 'Incorrect Answer 3'"),
    (GPQADiamondTask, {"Question": "Q?", "Correct Answer": "a", "Incorrect Answer 1": "b", "Incorrect Answer 2": "c",
                       "Incorrect Answer 3": "d"}, r"rows.jsonl:2: missing or empty id column 'Record ID'"),
]


@pytest.mark.parametrize("cls,bad,pattern", MALFORMED, ids=[f"{c.name}-{n}" for n, (c, _, _) in enumerate(MALFORMED)])
def test_malformed_row_names_file_and_line(cls, bad, pattern, tmp_path):
    good = fixture_rows(cls)[0]
    path = write_jsonl(tmp_path / "rows.jsonl", [good, bad])
    with pytest.raises(DataError, match=pattern):
        cls({"data": str(path)}).items()


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.name)
def test_duplicate_ids_name_file_and_line(cls, tmp_path):
    if cls is GSM8KTask:  # ids are row indices: never duplicated
        return
    row = fixture_rows(cls)[0]
    path = write_jsonl(tmp_path / "dup.jsonl", [row, row])
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate id '.+' \(first at line 1\)"):
        cls({"data": str(path)}).items()


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no items"):
        Math500Task({"data": str(tmp_path / "empty.jsonl")}).items()
    with pytest.raises(DataError, match="data file not found"):
        Math500Task({"data": str(tmp_path / "nope.jsonl")}).items()


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.name)
def test_unknown_option_lists_valid_ones(cls):
    with pytest.raises(BadInput, match=r"unknown .* option 'bogus'; valid: data, split, config") as exc:
        cls({"bogus": "1"})
    assert ("shuffle_seed" in exc.value.message) == (cls is GPQADiamondTask)
    assert ("source" in exc.value.message) == (cls in (GPQADiamondTask, OlympiadBenchTask))
    assert ("fewshot" in exc.value.message) == (cls is GSM8KTask)


@pytest.mark.parametrize("cls,options", VARIANTS, ids=lambda v: getattr(v, "name", None) or "-".join(v.values()))
def test_study_variants_load_their_fixture(cls, options):
    task = cls({"data": "sample", **options})
    items = task.items()
    assert len(items) == 12 and len({i.id for i in items}) == 12
    assert [i.id for i in items] == [i.id for i in cls({"data": "sample", **options}).items()]
    assert all(i.prefix and i.meta["answer"] == i.suffix for i in items)
    config = task.config()
    json.dumps(config, allow_nan=False)
    assert config["n_loaded"] == 12 and config["data"].startswith("package:reasoning/")
    assert all(config[k] == int(v) if k == "fewshot" else config[k] == v for k, v in options.items())


def test_options_fully_filled_in_by_the_harness_behave_as_given():
    """Registry.create hands a task every declared option with its default: a source's split and
    config still follow the source, and no default counts as a setting the user gave."""
    from harness import plugins

    reg = plugins.registry("tasks")
    assert reg.create("olympiadbench", {"source": "simplerl"}).config()["split"] == "test"
    assert reg.create("gpqa_diamond", {"source": "hendrydong"}).config()["shuffle_seed"] is None
    assert reg.create("gpqa_diamond", {}).config()["shuffle_seed"] == 0
    assert reg.create("gsm8k", {}).config()["fewshot"] == 0


def _no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_hub_failure_is_a_helpful_data_error(monkeypatch):
    """Whatever the environment (datasets installed or not, offline), a Hub id that cannot be
    loaded fails fast with a DataError saying how to run from a local file."""
    _no_network(monkeypatch)
    with pytest.raises(DataError) as exc:
        Math500Task({"data": "nobody-here/no-such-dataset-xyz"}).items()
    message = exc.value.message
    assert "nobody-here/no-such-dataset-xyz" in message or "datasets" in message
    assert "--task-option data=PATH" in message and "data=sample" in message


def test_hub_errors_through_load_dataset(monkeypatch):
    """The datasets path, with a stand-in ``datasets`` module (no network, no Hub)."""
    _no_network(monkeypatch)
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        raise ConnectionError("Couldn't reach the Hub (offline mode is enabled)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError) as exc:
        GSM8KTask().items()
    assert calls == [("openai/gsm8k", "main", "test")]
    message = exc.value.message
    assert "openai/gsm8k" in message and "offline" in message and "--task-option data=PATH" in message

    with pytest.raises(DataError) as exc:
        GPQADiamondTask().items()
    assert calls[-1] == ("Idavidrein/gpqa", "gpqa_diamond", "train")
    message = exc.value.message
    assert "gated" in message and "accept its terms" in message and "HF_TOKEN" in message
    assert "--task-option data=PATH" in message

    with pytest.raises(DataError):
        OlympiadBenchTask({"split": "test", "config": "none"}).items()
    assert calls[-1] == ("Hothan/OlympiadBench", None, "test")  # config=none means no config


def test_hub_rows_load_and_count_mismatch_warns(monkeypatch, capsys):
    rows = fixture_rows(Math500Task)

    def load_dataset(name, config, split):
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = Math500Task()
    items = task.items()
    assert [i.id for i in items] == [i.id for i in Math500Task({"data": "sample"}).items()]
    assert task.config()["n_loaded"] == 12 and task.config()["expected_count"] == 500
    assert "loaded 12 rows" in capsys.readouterr().err


def test_config_holds_no_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    text = json.dumps(GPQADiamondTask().config())
    assert "hf_secret_value" not in text and "token" not in text.lower()
