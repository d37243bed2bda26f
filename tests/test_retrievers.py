"""The retrievers: ``bm25`` in-process over a local corpus (ranking, ties, index cache, corpus
errors) and ``http`` against a real server (tests/retrieval_server.py) in both wire formats,
answering exactly what ``bm25`` answers in-process, with retries and one clear error; the
contract of every registered retriever; and ``checked_docs`` at the boundary."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import plugins
from harness.checks import PluginReturnError, checked_config, checked_docs
from harness.cli import cli
from harness.errors import BadInput
from harness.protocols import missing_members
from tests.retrieval_server import serve

pytest.importorskip("bm25s")
pytest.importorskip("Stemmer")

from plugins.retrievers.bm25 import BM25Retriever, packaged_corpus  # noqa: E402
from plugins.retrievers.http import HTTPRetriever, RetrieverServerError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = [
    ("paris", '"Paris"\nParis is the capital and largest city of France, on the river Seine.'),
    ("berlin", '"Berlin"\nBerlin is the capital of Germany and its largest city.'),
    ("seine", '"Seine"\nThe Seine flows through Paris into the English Channel at Le Havre.'),
    ("cats", '"Cat"\nThe cat is a small domesticated carnivorous mammal.'),
    ("twin-a", '"Volcano"\nA volcano is a rupture in the crust of a planet.'),
    ("twin-b", '"Volcano"\nA volcano is a rupture in the crust of a planet.'),
    ("lyon", '"Lyon"\nLyon is a city in France where the Rhone meets the Saone.'),
]
QUERIES = ["capital of France", "river flowing through Paris", "", "volcano crust", "the of and",
           "capital of France", "zebra quasar", "largest city", "mammal"]


def write_corpus(path: Path, rows=PASSAGES) -> Path:
    path.write_text("".join(json.dumps({"id": i, "contents": c}) + "\n" for i, c in rows))
    return path


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.jsonl")


@pytest.fixture
def bm25(corpus):
    return BM25Retriever({"corpus": str(corpus)})


def http(url, **options):
    return HTTPRetriever({"url": url, "backoff": "0", **{k: str(v) for k, v in options.items()}})


# -- bm25 -------------------------------------------------------------------------------
def test_bm25_ranks_the_passage_with_the_query_words_first(bm25):
    got = bm25.retrieve(QUERIES, 3)
    assert len(got) == len(QUERIES)
    assert got[0][0]["id"] == "paris" and got[1][0]["id"] == "seine" and got[8][0]["id"] == "cats"
    assert got[2] == [] and got[4] == [] and got[6] == []  # empty, stopwords only, unknown words
    assert got[5] == got[0]  # a repeated query: the same answer
    for row in got:
        assert len(row) <= 3
        assert all(isinstance(d["score"], float) and d["score"] > 0 for d in row)
        assert [d["score"] for d in row] == sorted((d["score"] for d in row), reverse=True)
    assert got[0][0]["contents"].split("\n")[0] == '"Paris"'
    assert [d["id"] for d in bm25.retrieve(["capital"], 1)[0]] == ["berlin"]
    assert bm25.retrieve(["capital"], 0) == [[]] and bm25.retrieve([], 3) == []


def test_bm25_ties_keep_corpus_order_and_results_are_copies(bm25):
    first = bm25.retrieve(["volcano crust"], 2)[0]
    assert [d["id"] for d in first] == ["twin-a", "twin-b"] and first[0]["score"] == first[1]["score"]
    assert [d["id"] for d in bm25.retrieve(["volcano crust"], 1)[0]] == ["twin-a"]
    first[0]["contents"] = "changed"
    assert bm25.retrieve(["volcano crust"], 2)[0][0]["contents"] != "changed"


def test_bm25_options_change_the_index_and_are_recorded(corpus):
    plain = BM25Retriever({"corpus": str(corpus), "stemmer": "none", "stopwords": "none", "k1": "1.2", "b": "0.75"})
    cfg = checked_config("retrievers", "bm25", plain.config())
    assert cfg["stemmer"] == "none" and cfg["k1"] == 1.2 and cfg["b"] == 0.75 and cfg["num_docs"] == len(PASSAGES)
    assert cfg["corpus"] == str(corpus) and len(cfg["corpus_sha256"]) == 64 and cfg["versions"]["bm25s"]
    assert plain.retrieve(["flows"], 3)[0][0]["id"] == "seine"
    assert plain.retrieve(["flow"], 3) == [[]]  # no stemming: "flows" is not "flow"
    assert BM25Retriever({"corpus": str(corpus)}).retrieve(["flowing"], 3)[0][0]["id"] == "seine"
    with pytest.raises(BadInput, match="stemmer='klingon'; valid: none, .*english"):
        BM25Retriever({"corpus": str(corpus), "stemmer": "klingon"})
    with pytest.raises(BadInput, match="unknown bm25 retriever option 'nope'"):
        plugins.registry("retrievers").create("bm25", {"corpus": str(corpus), "nope": "1"}, param_hint="--retriever")


def test_bm25_index_is_built_once_and_loaded_from_the_cache(corpus, tmp_path):
    cache = tmp_path / "idx"
    first = BM25Retriever({"corpus": str(corpus), "cache": str(cache)})
    assert not first.index_dir.exists()
    expected = first.retrieve(QUERIES, 4)
    assert first.index_built and (first.index_dir / "params.index.json").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in first.index_dir.iterdir()}
    second = BM25Retriever({"corpus": str(corpus), "cache": str(cache)})
    assert second.index_dir == first.index_dir
    assert second.retrieve(QUERIES, 4) == expected
    assert not second.index_built
    assert {p.name: p.stat().st_mtime_ns for p in second.index_dir.iterdir()} == stamps
    other = BM25Retriever({"corpus": str(corpus), "cache": str(cache), "k1": "1.5"})  # another setting: its own index
    assert other.index_dir != first.index_dir
    other.retrieve(["capital"], 1)
    assert other.index_built
    write_corpus(corpus, PASSAGES[:3])  # the corpus changed: a new key
    changed = BM25Retriever({"corpus": str(corpus), "cache": str(cache)})
    assert changed.index_dir != first.index_dir and changed.config()["num_docs"] == 3
    assert all(d["id"] in {"paris", "berlin", "seine"} for d in changed.retrieve(["capital city"], 5)[0])


def test_bm25_damaged_cache_is_rebuilt(corpus, tmp_path):
    first = BM25Retriever({"corpus": str(corpus), "cache": str(tmp_path / "idx")})
    expected = first.retrieve(QUERIES, 3)
    (first.index_dir / "vocab.index.json").write_text("{broken")
    again = BM25Retriever({"corpus": str(corpus), "cache": str(tmp_path / "idx")})
    assert again.retrieve(QUERIES, 3) == expected and again.index_built


@pytest.mark.parametrize("line, why", [
    ("{not json", "not JSON"),
    ('["a", "b"]', "a JSON list, expected an object"),
    ('{"contents": "x"}', 'no "id"'),
    ('{"id": "", "contents": "x"}', "id ''"),
    ('{"id": "z"}', 'no "contents"'),
    ('{"id": "z", "contents": "  "}', 'empty or non-string "contents"'),
    ('{"id": "paris", "contents": "again"}', "duplicate id 'paris' (first at line 1)"),
])
def test_corpus_errors_name_file_and_line(tmp_path, line, why):
    path = write_corpus(tmp_path / "bad.jsonl", PASSAGES[:2])
    path.write_text(path.read_text() + "\n" + line + "\n")  # a blank line 3 is skipped; the bad row is line 4
    with pytest.raises(BadInput) as err:
        BM25Retriever({"corpus": str(path)})
    message = err.value.format_message()
    assert f"{path}:4" in message and why in message and "\n" not in message


def test_missing_or_empty_corpus_is_one_line_naming_it(tmp_path):
    with pytest.raises(BadInput, match=r"corpus file '.*nowhere\.jsonl' does not exist"):
        BM25Retriever({"corpus": str(tmp_path / "nowhere.jsonl")})
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(BadInput, match="holds no passages"):
        BM25Retriever({"corpus": str(tmp_path / "empty.jsonl")})
    write_corpus(tmp_path / "stopwords.jsonl", [("1", "a"), ("2", "the and of")])
    with pytest.raises(BadInput, match="no passage of .* has a word to index"):
        BM25Retriever({"corpus": str(tmp_path / "stopwords.jsonl")}).retrieve(["the"], 1)


def test_default_corpus_is_the_packaged_fixture():
    path = packaged_corpus()
    assert path == ROOT / "tasks" / "data" / "search" / "corpus.jsonl" and path.is_file()
    r = BM25Retriever({})
    assert r.config()["corpus"] == "package:tasks/data/search/corpus.jsonl" and r.config()["num_docs"] > 0
    title = r.contents[0].split("\n")[0].strip('"')
    assert r.retrieve([title], 5)[0]


# -- http -------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["search_r1", "research"])
def test_http_answers_exactly_what_bm25_answers(bm25, protocol):
    with serve(bm25) as server:
        client = http(server.url, protocol=protocol, batch_size=2, concurrency=3)
        assert client.retrieve(QUERIES, 3) == bm25.retrieve(QUERIES, 3)
        assert client.retrieve(["capital of France"], 2) == bm25.retrieve(["capital of France"], 2)
        assert client.retrieve(["", "  "], 2) == [[], []]  # nothing sent
    paths = [p for p, _ in server.requests]
    unique = len(set(q for q in QUERIES if q.strip()))  # 7 unique non-empty queries, 2 per request
    if protocol == "search_r1":
        assert paths == ["/retrieve"] * (math.ceil(unique / 2) + 1)
        assert server.requests[-1][1] == {"queries": ["capital of France"], "topk": 2, "return_scores": True}
    else:
        assert sorted(paths) == sorted(["/batch_search"] * (unique // 2) + ["/search"] * (unique % 2 + 1))
        assert server.requests[-1][1] == {"query": "capital of France", "top_n": 2, "return_score": True}
    assert client.config() == {"url": server.url, "protocol": protocol}


@pytest.mark.parametrize("protocol", ["search_r1", "research"])
def test_http_accepts_replies_without_scores_or_ids(bm25, protocol):
    with serve(bm25, scores=False, ids=False) as server:
        got = http(server.url, protocol=protocol).retrieve(QUERIES, 3)
    want = bm25.retrieve(QUERIES, 3)
    assert [[d["contents"] for d in row] for row in got] == [[d["contents"] for d in row] for row in want]
    assert all(d["score"] is None and d["id"].startswith("sha256:") for row in got for d in row)
    twins = got[3]
    assert twins[0]["id"] == twins[1]["id"]  # same contents, same hashed id
    checked_docs("http", QUERIES, got, 3)


def test_http_retries_then_answers(bm25):
    with serve(bm25, fail=2, garbage=1) as server:
        got = http(server.url, retries=3).retrieve(["capital of France"], 2)
    assert got == bm25.retrieve(["capital of France"], 2) and len(server.requests) == 4


@pytest.mark.parametrize("switch", ["fail", "garbage", "hang"])
def test_http_gives_one_clear_error_after_its_retries(bm25, switch):
    with serve(bm25, **{switch: 10}, hang_seconds=3) as server:
        client = http(server.url, retries=1, timeout=0.3)
        with pytest.raises(RetrieverServerError) as err:
            client.retrieve(["capital of France", "largest city"], 2)
        message = err.value.format_message()
        assert server.url in message and "did not answer after 2 tries" in message and "\n" not in message
        assert {"fail": "HTTP 500", "garbage": "JSONDecodeError", "hang": "timed out"}[switch] in message
        assert len(server.requests) == 2


def test_http_error_never_shows_credentials(bm25):
    with serve(bm25) as server:
        secret_url = server.url.replace("http://", "http://user:hunter2@")
        client = http(secret_url, retries=0)
        assert "hunter2" not in json.dumps(client.config())
        with pytest.raises(RetrieverServerError) as err:
            client.retrieve(["capital"], 1)
    assert "hunter2" not in err.value.format_message() and "<redacted>" in err.value.format_message()


def test_http_wrong_shape_or_refused_request_fails_at_once(bm25):
    with serve(bm25, wrong_shape=1) as server:
        with pytest.raises(RetrieverServerError, match=r"/retrieve \(protocol search_r1\) sent an unexpected reply"):
            http(server.url, retries=3).retrieve(["capital"], 1)
        assert len(server.requests) == 1
        with pytest.raises(RetrieverServerError, match="refused the request .*HTTP 404"):
            http(server.url + "/elsewhere", retries=3).retrieve(["capital"], 1)
        assert len(server.requests) == 2


def test_http_needs_a_url():
    reg = plugins.registry("retrievers")
    with pytest.raises(BadInput, match=r"the http retriever needs --retriever-option url="):
        reg.create("http", {}, param_hint="--retriever")
    with pytest.raises(BadInput, match="is not an http"):
        reg.create("http", {"url": "localhost:8000"}, param_hint="--retriever")
    with pytest.raises(BadInput, match="protocol='grpc'; valid: search_r1, research"):
        reg.create("http", {"url": "http://h", "protocol": "grpc"}, param_hint="--retriever")


# -- the contract -----------------------------------------------------------------------
def test_list_retrievers_shows_both_with_their_options():
    result = CliRunner().invoke(cli, ["list", "retrievers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("bm25 ") for line in lines) and any(line.startswith("http ") for line in lines)
    for text in ("corpus: text, default None", "stemmer: text, default 'english'", "url: text, required",
                 "protocol: search_r1 | research, default 'search_r1'", "retries: integer >= 0"):
        assert text in result.output


@pytest.mark.parametrize("name", ["bm25", "http"])
def test_registered_retrievers_keep_the_contract(name, corpus):
    reg = plugins.registry("retrievers")
    assert name in reg.names() and not plugins.broken_plugins()
    cls = reg.classes[name]
    assert missing_members(cls, "retrievers") == []
    assert all(opt.help and opt.describe() for opt in cls.options)
    local = BM25Retriever({"corpus": str(corpus)})
    with serve(local) as server:
        options = {"corpus": str(corpus)} if name == "bm25" else {"url": server.url, "backoff": "0"}
        retriever = reg.create(name, options, param_hint="--retriever")
        cfg = checked_config("retrievers", name, retriever.config())
        assert cfg["name"] == name
        docs = checked_docs(name, QUERIES, retriever.retrieve(QUERIES, 2), 2)
        assert docs == local.retrieve(QUERIES, 2)
        retriever.close()
    with pytest.raises(BadInput):
        reg.create(name, dict(options, no_such_option="1"), param_hint="--retriever")


def test_checked_docs_refuses_a_bad_return_naming_the_plugin():
    import numpy as np

    good = [[{"id": "a", "contents": "t\nx", "score": np.float32(1.5), "extra": 1}], []]
    assert checked_docs("bm25", ["q1", "q2"], good, 1) == [[{"id": "a", "contents": "t\nx", "score": 1.5}], []]
    assert checked_docs("bm25", ["q"], [[{"id": "a", "contents": "", "score": None}]], 1)[0][0]["score"] is None
    doc = {"id": "a", "contents": "x", "score": 1.0}
    bad = [
        ({"q": []}, "returned a dict result list"),
        ([[doc]], "returned 1 result list(s) for 2 queries"),
        ([[doc], "nope"], "returned a str for query 1 ('q2')"),
        ([[doc, doc], []], "returned 2 docs for query 0 ('q1'), more than topk=1"),
        ([["a"], []], "returned a str as doc 0 of query 0"),
        ([[dict(doc, id=3)], []], "with id 3"),
        ([[dict(doc, id="")], []], "with id ''"),
        ([[dict(doc, contents=None)], []], "whose contents is a NoneType"),
        ([[dict(doc, score=float("nan"))], []], "with score nan"),
        ([[dict(doc, score="1")], []], "with score '1'"),
        ([[dict(doc, score=True)], []], "with score True"),
    ]
    for result, why in bad:
        with pytest.raises(PluginReturnError) as err:
            checked_docs("bm25", ["q1", "q2"], result, 1)
        message = err.value.format_message()
        assert message.startswith("retriever 'bm25' (plugin plugins.retrievers.bm25, dist thought-harness)"), message
        assert why in message, (why, message)


def test_retriever_modules_import_light():
    code = ("import sys, plugins.retrievers.bm25, plugins.retrievers.http; "
            "print(sorted(m for m in ('bm25s', 'Stemmer', 'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
