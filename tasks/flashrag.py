"""Question-answering tasks in the FlashRAG schema, for search-augmented evals (``search_r1``).

Tasks ``nq``, ``triviaqa``, ``popqa``, ``hotpotqa``, ``2wikimultihopqa``, ``musique`` and
``bamboogle`` read the Hub dataset ``RUC-NLPIR/FlashRAG_datasets`` (config = the task's name) or a
local copy; ``search_fixture`` reads 30 questions written for this project over a made-up world
(``tasks/data/search/questions.jsonl``, 20 single-hop and 10 two-hop) whose evidence is in the
packaged passage corpus ``tasks/data/search/corpus.jsonl`` (``{"id", "contents"}`` rows, the title
on the first line of ``contents``, as in the Search-R1 wiki-18 corpus; the ``bm25`` retriever's
default corpus). Nothing in that world can be answered from memory: retrieval is needed.

Splits, from the dataset card's configs: nq and triviaqa have train/dev/test, popqa and bamboogle
only test; hotpotqa, 2wikimultihopqa and musique have train/dev and no test. Each task reads
``test`` where there is one, else ``dev`` (the Search-R1 evaluation sets; the full sizes are the
``expected_count`` a Hub load is checked against).

A row has ``id``, ``question`` and ``golden_answers`` (a list of non-empty strings), optionally
``metadata`` (a dict) and ``gold_doc_ids`` (ids of corpus passages holding the evidence, in hop
order; resolved against ``corpus``). An item is::

    Item(id="<task>/<row id>", prefix=<question, stripped>, suffix=<first golden answer>,
         cluster=None, meta={"golden_answers": [...], "dataset": <task>, "hops": 1 | 2 | ... | None,
                             "gold_docs": [{"id", "contents"}, ...]})   # gold_docs only when known

``hops``: the row's own (``hops`` or ``metadata.hops``), else the dataset's (1 for nq, triviaqa,
popqa; 2 for hotpotqa, 2wikimultihopqa, bamboogle; musique: the number its id starts with,
``2hop__...``). ``gold_docs``: the ``gold_doc_ids`` passages, or the supporting paragraphs a row's
``metadata`` carries (MuSiQue-style ``paragraphs`` with ``is_supporting``; HotpotQA-style
``context`` with ``supporting_facts``), each as ``{"id": title, "contents": "title\\ntext"}``.

Options (``--task-option``): ``data`` (a .jsonl/.parquet file in the FlashRAG schema, also
``--data-file``, or a Hub id in the same layout; default the FlashRAG Hub dataset, for
``search_fixture`` the packaged questions), ``split`` (Hub only), ``corpus`` (the JSONL corpus
that ``gold_doc_ids`` name; default: none, for ``search_fixture`` the packaged one; read in full,
so a multi-GB corpus takes minutes). A malformed row is a one-line error naming ``file:line``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from harness import fingerprint
from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Item
from tasks.benchmarks import SAMPLE, as_list, native_id, scalar, text, where
from tasks.loading import DataError, is_local, read_rows

HUB_ID = "RUC-NLPIR/FlashRAG_datasets"
FIXTURE_DIR = "data/search"  # inside the tasks package
_HOPS_PREFIX = re.compile(r"^(\d+)hop")  # musique ids: 2hop__..., 3hop1__..., 4hop3__...


def fixture_path(filename: str) -> str:
    """A file of the packaged search fixture (``questions.jsonl`` or ``corpus.jsonl``)."""
    return str(resources.files("tasks").joinpath(f"{FIXTURE_DIR}/{filename}"))


def fixture_corpus_path() -> str:
    """The packaged passage corpus of the search fixture (the bm25 retriever's default)."""
    return fixture_path("corpus.jsonl")


@dataclass(frozen=True)
class Dataset:
    """One FlashRAG dataset: its Hub config is the task name."""

    split: str  # test where the dataset has one, else dev
    expected_count: int  # rows of that split
    hops: int | None  # None: per row (musique's id prefix)
    about: str


# Splits as checked against the dataset card's ``configs`` and the repository's folders: nq and
# triviaqa list train/dev/test, popqa and bamboogle a test file only, 2wikimultihopqa and musique
# dev/train only; hotpotqa's folder was not seen, and dev is taken as for the other multi-hop sets
# (the Search-R1 evaluation uses hotpotqa dev). Sizes: the Search-R1 evaluation sets, matching the
# source datasets' splits (HotpotQA dev 7,405; 2Wiki dev 12,576; MuSiQue answerable dev 2,417).
DATASETS = {
    "nq": Dataset("test", 3610, 1, "Natural Questions, open-domain single-hop"),
    "triviaqa": Dataset("test", 11313, 1, "TriviaQA, open-domain single-hop"),
    "popqa": Dataset("test", 14267, 1, "PopQA, long-tail entity single-hop"),
    "hotpotqa": Dataset("dev", 7405, 2, "HotpotQA, two-hop Wikipedia"),
    "2wikimultihopqa": Dataset("dev", 12576, 2, "2WikiMultihopQA, multi-hop Wikipedia"),
    "musique": Dataset("dev", 2417, None, "MuSiQue, 2-4 hop composed questions"),
    "bamboogle": Dataset("test", 125, 2, "Bamboogle, two-hop questions search engines miss"),
}


@hookimpl
def register_tasks(register):
    for cls in TASKS:
        register(cls)


# -- row parsing ----------------------------------------------------------------------------

def golden_answers(row: dict) -> list[str]:
    """A row's ``golden_answers``: a non-empty list of non-empty strings (DataError otherwise)."""
    value = row.get("golden_answers")
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(f"{where(row)}: missing 'golden_answers' (a list of answer strings; "
                        f"columns: {', '.join(k for k in row if not k.startswith('_'))})")
    answers = None if isinstance(value, (str, bytes, dict)) else as_list(value)
    if answers is None:
        raise DataError(f"{where(row)}: 'golden_answers' is a {type(value).__name__}, expected a list of strings")
    if not answers:
        raise DataError(f"{where(row)}: 'golden_answers' is empty")
    for k, answer in enumerate(answers):
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{where(row)}: golden_answers[{k}] is {answer!r}; each golden answer must be a "
                            "non-empty string")
    return [str(a) for a in answers]  # plain str (parquet gives numpy strings)


def metadata(row: dict) -> dict:
    """A row's ``metadata`` as a dict ({} when absent; a JSON string is decoded)."""
    value = row.get("metadata")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def row_hops(row: dict, meta: dict, native: str, default: int | None) -> int | None:
    for value in (row.get("hops"), meta.get("hops")):
        value = scalar(value) if value is not None and not isinstance(value, (list, dict)) else None
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and value == int(value) and value >= 1):
            return int(value)
    match = _HOPS_PREFIX.match(native)
    return int(match.group(1)) if match and default is None else default


def doc_ids(row: dict) -> list[str] | None:
    """A row's ``gold_doc_ids`` as strings (None when the row has none)."""
    value = row.get("gold_doc_ids")
    if value is None or (isinstance(value, float) and value != value):
        return None
    ids = None if isinstance(value, (str, bytes, dict)) else as_list(value)
    if not ids or any(isinstance(i, bool) or not isinstance(i, (str, int)) or not str(i).strip() for i in ids):
        raise DataError(f"{where(row)}: 'gold_doc_ids' must be a non-empty list of passage ids, got {value!r}")
    return [str(i).strip() for i in ids]


def _passage(title: str, body: str) -> dict:
    return {"id": title, "contents": f"{title}\n{body}".strip()}


def _unique_ids(docs: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for doc in docs:
        n = seen[doc["id"]] = seen.get(doc["id"], 0) + 1
        if n > 1:
            doc["id"] = f"{doc['id']} ({n})"
    return docs


def _pairs(value, keys: tuple[str, str]) -> list[tuple]:
    """``{"title": [...], "sentences": [...]}`` (the Hub's columns) or ``[[title, x], ...]`` (the
    original JSON) as a list of pairs."""
    if isinstance(value, dict):
        a, b = as_list(value.get(keys[0])) or [], as_list(value.get(keys[1])) or []
        return list(zip(a, b))
    return [tuple(p) for p in (as_list(value) or []) if isinstance(p, (list, tuple)) and len(p) == 2]


def metadata_gold_docs(meta: dict) -> list[dict]:
    """The supporting paragraphs a FlashRAG row's metadata carries, or [] when it has none."""
    paragraphs = as_list(meta.get("paragraphs")) or []
    if paragraphs and all(isinstance(p, dict) for p in paragraphs):  # MuSiQue
        docs = [_passage(str(p.get("title") or "").strip(), str(p.get("paragraph_text") or "").strip())
                for p in paragraphs if scalar(p.get("is_supporting")) is True and p.get("paragraph_text")]
        return _unique_ids(docs)
    context, facts = meta.get("context"), meta.get("supporting_facts")
    if context is None or facts is None:
        return []
    titles = {str(t).strip() for t, _ in _pairs(facts, ("title", "sent_id"))}
    docs = []
    for title, sentences in _pairs(context, ("title", "sentences")):
        sentences = as_list(sentences) or []
        if str(title).strip() in titles:
            docs.append(_passage(str(title).strip(), " ".join(str(s).strip() for s in sentences if s)))
    return _unique_ids(docs)


def read_passages(path: Path, wanted: set[str]) -> tuple[dict[str, str], str]:
    """``(id -> contents for the ids in wanted, sha256 of the file)`` of a JSONL passage corpus
    (:func:`tasks.corpus.read_corpus`: a malformed line is an error naming ``file:line``)."""
    from tasks.corpus import read_corpus

    ids, contents, sha = read_corpus(path, "QA task", "--task-option")
    return {i: c for i, c in zip(ids, contents) if i in wanted}, sha


# -- tasks ----------------------------------------------------------------------------------

def _options(split: str | None, fixture: bool) -> tuple:
    if fixture:
        return (Option("data", str, None, "a .jsonl/.parquet file of questions in the FlashRAG schema with "
                                          "gold_doc_ids (default: the 30 packaged questions)"),
                Option("corpus", str, None, "JSONL corpus of {id, contents} that gold_doc_ids name (default: "
                                            f"the packaged tasks/{FIXTURE_DIR}/corpus.jsonl)"))
    return (Option("data", str, None, "a local .jsonl/.parquet file in the FlashRAG schema, or a Hub dataset id "
                                      f"in its layout (default: {HUB_ID})"),
            Option("split", str, split, "Hub split (ignored for a local file)"),
            Option("corpus", str, None, "JSONL corpus of {id, contents} for rows' gold_doc_ids (default: none)"))


class FlashRAGTask:
    """Base class: one FlashRAG dataset (``dataset``) or the packaged fixture (``fixture``)."""

    name = ""
    description = ""
    dataset: Dataset | None = None
    fixture = False
    options: tuple = ()

    def __init__(self, options=None):
        self.options = parse_options(self.options, options or {}, f"{self.name} task", "--task-option")
        if not self.fixture and self.options["data"] == SAMPLE:
            raise BadInput(f"{self.name} task: there is no packaged {self.name} sample; the packaged questions "
                           "are the search_fixture task (--task search_fixture)", param_hint="--task-option")
        self.n_loaded: int | None = None
        self.corpus_sha256: str | None = None

    # -- data -----------------------------------------------------------------------------

    def source(self) -> str:
        data = self.options["data"]
        if self.fixture and data in (None, SAMPLE):
            return fixture_path("questions.jsonl")
        return str(data or HUB_ID)

    def is_hub(self) -> bool:
        return not self.fixture and not is_local(self.source())

    def corpus(self) -> str | None:
        if self.options["corpus"]:
            return self.options["corpus"]
        return fixture_corpus_path() if self.fixture else None

    def rows(self) -> list[dict]:
        source = self.source()
        try:
            return read_rows(source, split=self.options.get("split") or "test", config=self.name)
        except DataError as exc:
            if not self.is_hub():
                raise
            raise DataError(f"{exc.message.rstrip('.')}. To run without the Hub, pass a local copy in the "
                            f"FlashRAG schema with --task-option data=PATH or --data-file PATH (.jsonl or "
                            f".parquet), or use --task search_fixture (30 packaged questions)") from exc

    # -- items ----------------------------------------------------------------------------

    def items(self) -> list[Item]:
        parsed, seen = [], {}
        default_hops = self.dataset.hops if self.dataset else None
        for row in self.rows():
            native = native_id(row, "id")
            question = text(row, "question")
            answers = golden_answers(row)
            meta = metadata(row)
            item_id = f"{self.name}/{native}"
            if item_id in seen:
                raise DataError(f"{where(row)}: duplicate id {item_id!r} (first at line {seen[item_id]})")
            seen[item_id] = row["_line"]
            parsed.append((row, item_id, question, answers, row_hops(row, meta, native, default_hops),
                           doc_ids(row), metadata_gold_docs(meta)))
        if not parsed:
            raise DataError(f"no items in {self.source()}")
        passages = self._passages({i for p in parsed for i in p[5] or ()})
        items = []
        for row, item_id, question, answers, hops, ids, from_meta in parsed:
            meta = {"golden_answers": answers, "dataset": self.name, "hops": hops}
            if ids:
                missing = [i for i in ids if i not in passages]
                if missing:
                    raise DataError(f"{where(row)}: gold_doc_ids {missing} not in the corpus {self.corpus()}")
                meta["gold_docs"] = [{"id": i, "contents": passages[i]} for i in ids]
            elif from_meta:
                meta["gold_docs"] = from_meta
            items.append(Item(item_id, question, answers[0], None, meta))
        self.n_loaded = len(items)
        if self.is_hub() and self.n_loaded != self.dataset.expected_count:
            click.echo(f"warning: {self.name}: loaded {self.n_loaded} rows from {HUB_ID} ({self.name}, "
                       f"{self.options['split']}), expected {self.dataset.expected_count} for the full set", err=True)
        return items

    def _passages(self, wanted: set[str]) -> dict[str, str]:
        if not wanted:
            return {}
        corpus = self.corpus()
        if corpus is None:
            raise DataError(f"{self.source()}: rows name gold_doc_ids but no corpus is given; pass "
                            "--task-option corpus=PATH (a JSONL file of {id, contents})")
        passages, self.corpus_sha256 = read_passages(Path(corpus).expanduser(), wanted)
        return passages

    def config(self) -> dict:
        """What decides the items: the dataset, where its rows come from (the Hub id, config and
        split, or the file as given and its sha256) and the corpus that resolved gold_doc_ids."""
        hub, data, source = self.is_hub(), self.options["data"], self.source()
        if self.fixture and data in (None, SAMPLE):
            data = "package:search/questions.jsonl"
        corpus = self.options["corpus"] or ("package:search/corpus.jsonl" if self.fixture else None)
        return {"dataset": self.name, "source": data or HUB_ID,
                "sha256": None if hub or not Path(source).is_file() else fingerprint.file_sha256(source),
                "hub_config": self.name if hub else None, "split": self.options.get("split") if hub else None,
                "corpus": corpus, "corpus_sha256": self.corpus_sha256,
                "expected_count": self.dataset.expected_count if self.dataset else None, "n_loaded": self.n_loaded}


def _task_class(name: str, dataset: Dataset) -> type:
    cls_name = "FlashRAG" + "".join(part.capitalize() for part in re.split(r"[^a-z0-9]+", name)) + "Task"
    return type(cls_name, (FlashRAGTask,), {
        "__module__": __name__, "__doc__": f"Task ``{name}``: {dataset.about} (FlashRAG config {name!r}).",
        "name": name, "dataset": dataset, "options": _options(dataset.split, False),
        "description": f"{dataset.about}; golden_answers lists ({HUB_ID} {name} {dataset.split}, "
                       f"{dataset.expected_count:,})"})


class SearchFixtureTask(FlashRAGTask):
    """Task ``search_fixture``: the packaged questions over the packaged corpus, with gold passages."""

    name = "search_fixture"
    description = ("30 made-up-world questions (20 single-hop, 10 two-hop) answerable only from the packaged "
                   "corpus; gold passages in meta")
    fixture = True
    options = _options(None, True)


HUB_TASKS = {name: _task_class(name, ds) for name, ds in DATASETS.items()}
TASKS = (*HUB_TASKS.values(), SearchFixtureTask)
