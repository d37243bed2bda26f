"""The FlashRAG QA tasks (``nq`` ... ``bamboogle``) and the packaged ``search_fixture``: the
fixture's internal consistency (gold passages exist and hold the answers, two-hop chains link),
the Hub mapping (config = task name, test-or-dev split) through a stand-in ``datasets`` module,
local JSONL/parquet copies, malformed rows named by file:line, and registration."""

import json
import re
import sys
import types

import pytest
from click.testing import CliRunner

from harness.errors import BadInput
from tasks.flashrag import (DATASETS, HUB_ID, HUB_TASKS, TASKS, SearchFixtureTask, fixture_corpus_path,
                            fixture_path, metadata_gold_docs)
from tasks.loading import DataError
from tasks.qa_metrics import passage_has_answer

NAMES = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
META_KEYS = {"golden_answers", "dataset", "hops", "gold_docs"}


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def hub_rows(name, n=3):
    """Rows in the FlashRAG Hub schema (ids as the Hub writes them)."""
    prefix = "2hop__1_2" if name == "musique" else f"{DATASETS[name].split}"
    return [{"id": f"{prefix}_{k}", "question": f"  who wrote the letter number {k}  ",
             "golden_answers": [f"Author {k}", f"A. {k}"], "metadata": {}} for k in range(n)]


@pytest.fixture(scope="module")
def questions():
    return read_jsonl(fixture_path("questions.jsonl"))


@pytest.fixture(scope="module")
def corpus():
    return read_jsonl(fixture_corpus_path())


# -- the packaged fixture -------------------------------------------------------------------

def test_fixture_loads_with_gold_passages(questions, corpus):
    task = SearchFixtureTask()
    items = task.items()
    assert len(items) == len(questions) == 30
    assert [i.id for i in items] == [f"search_fixture/{q['id']}" for q in questions]
    assert len({i.id for i in items}) == 30 and items == SearchFixtureTask({"data": "sample"}).items()
    assert sorted(i.meta["hops"] for i in items) == [1] * 20 + [2] * 10
    contents = {d["id"]: d["contents"] for d in corpus}
    for item, q in zip(items, questions):
        assert set(item.meta) == META_KEYS and item.cluster is None
        assert item.prefix == q["question"].strip() and item.suffix == q["golden_answers"][0]
        assert item.meta["dataset"] == "search_fixture" and item.meta["golden_answers"] == q["golden_answers"]
        assert [d["id"] for d in item.meta["gold_docs"]] == q["gold_doc_ids"]
        assert all(d["contents"] == contents[d["id"]] for d in item.meta["gold_docs"])
        assert len(item.meta["gold_docs"]) == item.meta["hops"]
        json.dumps(item.meta)
    config = task.config()
    json.dumps(config, allow_nan=False)
    assert config["source"] == "package:search/questions.jsonl" and config["corpus"] == "package:search/corpus.jsonl"
    assert config["n_loaded"] == 30 and re.fullmatch(r"[0-9a-f]{64}", config["sha256"])
    assert re.fullmatch(r"[0-9a-f]{64}", config["corpus_sha256"]) and config["split"] is None


def test_fixture_corpus_is_well_formed(corpus):
    ids = [d["id"] for d in corpus]
    assert 200 <= len(ids) <= 400 and len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i for i in ids)
    titles = []
    for doc in corpus:
        title, _, body = doc["contents"].partition("\n")
        assert title.strip() == title and title and body.strip(), doc["id"]
        titles.append(title)
    assert len(set(titles)) == len(titles)


def test_every_gold_passage_holds_the_evidence(questions, corpus):
    """Single-hop: the gold passage holds a golden answer. Two-hop: the first passage names the
    second (its title, the bridge entity) and not the answer; the second holds the answer."""
    contents = {d["id"]: d["contents"] for d in corpus}
    for q in questions:
        golds, ids = q["golden_answers"], q["gold_doc_ids"]
        assert all(i in contents for i in ids), q["id"]
        assert q["metadata"]["hops"] == len(ids) and len(set(ids)) == len(ids)
        last = contents[ids[-1]]
        assert passage_has_answer(last, golds), q["id"]
        assert any(g.lower() in last.lower() for g in golds), q["id"]  # literally, not only normalised
        if len(ids) == 2:
            first = contents[ids[0]]
            bridge = contents[ids[1]].split("\n")[0]
            assert bridge in first, q["id"]
            assert not passage_has_answer(first, golds), q["id"]


def test_bm25_finds_the_first_gold_passage(questions, tmp_path):
    pytest.importorskip("bm25s")
    pytest.importorskip("Stemmer")
    from plugins.retrievers.bm25 import BM25Retriever

    retriever = BM25Retriever({"corpus": fixture_corpus_path(), "cache": str(tmp_path / "index")})
    results = retriever.retrieve([q["question"] for q in questions], 3)
    for q, docs in zip(questions, results):
        assert q["gold_doc_ids"][0] in [d["id"] for d in docs], q["id"]
    contents = {i: c for i, c in zip(retriever.ids, retriever.contents)}
    for q in questions:  # the second hop: a search for the bridge entity finds it
        if len(q["gold_doc_ids"]) == 2:
            bridge = contents[q["gold_doc_ids"][1]].split("\n")[0]
            assert q["gold_doc_ids"][1] in [d["id"] for d in retriever.retrieve([bridge], 3)[0]], q["id"]


def test_fixture_parquet_copy_loads_identically(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "questions.parquet"
    pd.DataFrame(read_jsonl(fixture_path("questions.jsonl"))).to_parquet(path)
    want, got = SearchFixtureTask().items(), SearchFixtureTask({"data": str(path)}).items()
    assert [(i.id, i.prefix, i.suffix, i.meta) for i in got] == [(i.id, i.prefix, i.suffix, i.meta) for i in want]
    assert json.dumps([i.meta for i in got]) == json.dumps([i.meta for i in want])


def test_fixture_with_another_corpus(tmp_path, questions):
    rows = [dict(questions[0], gold_doc_ids=["x1"])]
    data = write_jsonl(tmp_path / "q.jsonl", rows)
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "x1", "contents": "Brindlemoor\nOn the Quell."},
                                                {"id": 7, "contents": "Other\ntext"}])
    task = SearchFixtureTask({"data": str(data), "corpus": str(corpus)})
    [item] = task.items()
    assert item.meta["gold_docs"] == [{"id": "x1", "contents": "Brindlemoor\nOn the Quell."}]
    assert task.config()["corpus"] == str(corpus) and task.config()["source"] == str(data)


# -- the Hub tasks ---------------------------------------------------------------------------

def fake_datasets(monkeypatch, rows=None, error=None):
    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if error:
            raise error
        return rows(config) if callable(rows) else rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_each_task_maps_to_its_config_and_split():
    table = {(c.name, c.dataset.split, c.dataset.expected_count, c.dataset.hops) for c in HUB_TASKS.values()}
    assert table == {("nq", "test", 3610, 1), ("triviaqa", "test", 11313, 1), ("popqa", "test", 14267, 1),
                     ("hotpotqa", "dev", 7405, 2), ("2wikimultihopqa", "dev", 12576, 2),
                     ("musique", "dev", 2417, None), ("bamboogle", "test", 125, 2)}
    for name in NAMES:
        config = HUB_TASKS[name]().config()
        assert (config["source"], config["hub_config"], config["split"]) == (HUB_ID, name, DATASETS[name].split)
        assert config["dataset"] == name and config["n_loaded"] is None and config["sha256"] is None
        assert HUB_TASKS[name].description and "\n" not in HUB_TASKS[name].description


@pytest.mark.parametrize("name", NAMES)
def test_hub_rows_become_items(name, monkeypatch, capsys):
    calls = fake_datasets(monkeypatch, rows=lambda config: hub_rows(config))
    task = HUB_TASKS[name]()
    items = task.items()
    assert calls == [(HUB_ID, name, DATASETS[name].split)]
    assert [i.id for i in items] == [f"{name}/{r['id']}" for r in hub_rows(name)]
    first = items[0]
    assert first.prefix == "who wrote the letter number 0" and first.suffix == "Author 0"
    assert first.meta == {"golden_answers": ["Author 0", "A. 0"], "dataset": name,
                          "hops": 2 if name == "musique" else DATASETS[name].hops}
    assert task.config()["n_loaded"] == 3
    assert f"loaded 3 rows from {HUB_ID} ({name}, {DATASETS[name].split})" in capsys.readouterr().err
    HUB_TASKS[name]({"split": "train"}).items()
    assert calls[-1] == (HUB_ID, name, "train")


def test_hub_failure_says_how_to_run_offline(monkeypatch):
    fake_datasets(monkeypatch, error=ConnectionError("Couldn't reach the Hub (offline mode is enabled)"))
    with pytest.raises(DataError) as exc:
        HUB_TASKS["hotpotqa"]().items()
    message = exc.value.message
    assert HUB_ID in message and "offline" in message and "split=dev" in message
    assert "--task-option data=PATH" in message and "--data-file" in message and "search_fixture" in message


def test_musique_hops_and_metadata_gold_docs(tmp_path):
    paragraphs = [{"idx": 0, "title": "Green", "paragraph_text": "Green is a colour.", "is_supporting": False},
                  {"idx": 1, "title": "Alma", "paragraph_text": "Alma was born in Tarn.", "is_supporting": True},
                  {"idx": 2, "title": "Tarn", "paragraph_text": "Tarn lies on the Lune.", "is_supporting": True}]
    rows = [{"id": "3hop1__9_8_7", "question": "q1", "golden_answers": ["Lune"], "metadata": {"paragraphs": paragraphs}},
            {"id": "2hop__1_2", "question": "q2", "golden_answers": ["x"]},
            {"id": "odd", "question": "q3", "golden_answers": ["x"], "metadata": {"hops": 4}}]
    items = HUB_TASKS["musique"]({"data": str(write_jsonl(tmp_path / "m.jsonl", rows))}).items()
    assert [i.meta["hops"] for i in items] == [3, 2, 4]
    assert items[0].meta["gold_docs"] == [{"id": "Alma", "contents": "Alma\nAlma was born in Tarn."},
                                          {"id": "Tarn", "contents": "Tarn\nTarn lies on the Lune."}]
    assert "gold_docs" not in items[1].meta


def test_hotpot_style_supporting_facts():
    columns = {"context": {"title": ["A", "B", "C"], "sentences": [["A is x.", " It is y."], ["B."], ["C z."]]},
               "supporting_facts": {"title": ["A", "C", "A"], "sent_id": [0, 0, 1]}}
    pairs = {"context": [["A", ["A is x.", "It is y."]], ["B", ["B."]], ["C", ["C z."]]],
             "supporting_facts": [["A", 0], ["C", 0]]}
    want = [{"id": "A", "contents": "A\nA is x. It is y."}, {"id": "C", "contents": "C\nC z."}]
    assert metadata_gold_docs(columns) == want == metadata_gold_docs(pairs)
    assert metadata_gold_docs({}) == [] == metadata_gold_docs({"context": columns["context"]})


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_local_copy_in_the_hub_schema(suffix, tmp_path):
    rows = hub_rows("nq") + [{"id": "test_9", "question": "when", "golden_answers": ["1999"],
                              "metadata": {"hops": 1}}]
    path = tmp_path / f"nq.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, rows)
    else:
        pd = pytest.importorskip("pandas")
        pytest.importorskip("pyarrow")
        pd.DataFrame(rows).to_parquet(path)
    task = HUB_TASKS["nq"]({"data": str(path)})
    items = task.items()
    assert [i.id for i in items] == ["nq/test_0", "nq/test_1", "nq/test_2", "nq/test_9"]
    assert items[-1].meta == {"golden_answers": ["1999"], "dataset": "nq", "hops": 1}
    json.dumps([i.meta for i in items])
    config = task.config()
    assert config["source"] == str(path) and config["hub_config"] is None and config["split"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", config["sha256"]) and config["n_loaded"] == 4


def test_data_file_and_limit_through_the_harness(tmp_path):
    from harness.runner import load_items

    path = write_jsonl(tmp_path / "bamboogle.jsonl", hub_rows("bamboogle", 5))
    items, configs = load_items(["bamboogle"], {}, str(path), 2)
    assert [i.id for i in items] == ["bamboogle/test_0", "bamboogle/test_1"]
    assert configs[0]["name"] == "bamboogle" and configs[0]["source"] == str(path)


GOOD = {"id": "r1", "question": "Who?", "golden_answers": ["Ann"]}
MALFORMED = [
    ({"id": "r2", "golden_answers": ["Ann"]}, r"rows.jsonl:2: missing or empty text column 'question'"),
    ({"id": "r2", "question": "   ", "golden_answers": ["Ann"]}, r"rows.jsonl:2: missing or empty text column 'question'"),
    ({"id": "r2", "question": "Who?"}, r"rows.jsonl:2: missing 'golden_answers'"),
    ({"id": "r2", "question": "Who?", "golden_answers": "Ann"}, r"rows.jsonl:2: 'golden_answers' is a str, expected a list"),
    ({"id": "r2", "question": "Who?", "golden_answers": []}, r"rows.jsonl:2: 'golden_answers' is empty"),
    ({"id": "r2", "question": "Who?", "golden_answers": ["Ann", " "]}, r"rows.jsonl:2: golden_answers\[1\] is ' '"),
    ({"id": "r2", "question": "Who?", "golden_answers": [3]}, r"rows.jsonl:2: golden_answers\[0\] is 3"),
    ({"question": "Who?", "golden_answers": ["Ann"]}, r"rows.jsonl:2: missing or empty id column 'id'"),
    ({"id": "r1", "question": "Who?", "golden_answers": ["Ann"]}, r"rows.jsonl:2: duplicate id 'nq/r1' \(first at line 1\)"),
    ({"id": "r2", "question": "Who?", "golden_answers": ["Ann"], "gold_doc_ids": "p1"},
     r"rows.jsonl:2: 'gold_doc_ids' must be a non-empty list"),
]


@pytest.mark.parametrize("bad,pattern", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_row_names_file_and_line(bad, pattern, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD, bad])
    with pytest.raises(DataError, match=pattern) as exc:
        HUB_TASKS["nq"]({"data": str(path)}).items()
    assert "\n" not in exc.value.message


def test_gold_doc_ids_need_a_corpus_that_has_them(tmp_path):
    row = dict(GOOD, gold_doc_ids=["p1", "p404"])
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(DataError, match="rows name gold_doc_ids but no corpus is given; pass --task-option corpus="):
        HUB_TASKS["nq"]({"data": str(path)}).items()
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "p1", "contents": "T\nAnn"}])
    with pytest.raises(DataError, match=r"rows.jsonl:1: gold_doc_ids \['p404'\] not in the corpus"):
        HUB_TASKS["nq"]({"data": str(path), "corpus": str(corpus)}).items()
    (tmp_path / "bad.jsonl").write_text('{"id": "p1", "contents": "T\\nAnn"}\n\n{"id": "p2"}\n')
    with pytest.raises(BadInput, match=r"bad.jsonl:3: no \"contents\" \(id 'p2'\)"):  # the one corpus reader
        HUB_TASKS["nq"]({"data": str(path), "corpus": str(tmp_path / "bad.jsonl")}).items()
    with pytest.raises(BadInput, match=r"QA task: corpus file '.*none.jsonl' does not exist"):
        SearchFixtureTask({"corpus": str(tmp_path / "none.jsonl")}).items()


def test_bad_options(tmp_path):
    with pytest.raises(BadInput, match="no packaged nq sample.*--task search_fixture"):
        HUB_TASKS["nq"]({"data": "sample"})
    with pytest.raises(BadInput, match=r"unknown .* option 'bogus'; valid: data, split, corpus"):
        HUB_TASKS["popqa"]({"bogus": "1"})
    with pytest.raises(BadInput, match=r"unknown .* option 'split'; valid: data, corpus"):
        SearchFixtureTask({"split": "dev"})
    with pytest.raises(DataError, match="data file not found"):
        HUB_TASKS["nq"]({"data": str(tmp_path / "missing.jsonl")}).items()
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no items"):
        HUB_TASKS["nq"]({"data": str(tmp_path / "empty.jsonl")}).items()


# -- registration ----------------------------------------------------------------------------

def test_registered_and_listed():
    import tasks.flashrag
    from harness import plugins
    from harness.cli import cli

    got = []
    tasks.flashrag.register_tasks(got.append)
    assert tuple(got) == TASKS and [c.name for c in TASKS] == [*NAMES, "search_fixture"]
    reg = plugins.registry("tasks")
    assert set(reg.names()) >= {*NAMES, "search_fixture"}
    assert reg.create("musique", {}).config()["split"] == "dev"
    assert len(reg.create("search_fixture", {}).items()) == 30
    result = CliRunner().invoke(cli, ["list", "tasks"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in (*NAMES, "search_fixture"):
        assert any(line.startswith(f"{name} ") and "[tasks.flashrag]" in line for line in lines), name
    assert "split: text, default 'dev' - Hub split" in result.output
