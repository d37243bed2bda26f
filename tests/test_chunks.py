import json

import pytest

from tasks.chunks import ChunksTask, split_interleaved, split_text
from tasks.loading import DataError


def test_split_is_deterministic_and_word_based():
    text = " ".join(f"w{i}" for i in range(100))
    p, s = split_text(text, prefix_words=60, suffix_words=20)
    assert p.split() == [f"w{i}" for i in range(60)] and s.split() == [f"w{i}" for i in range(60, 80)]
    p2, s2 = split_text("a b c d e f", prefix_words=288, suffix_words=96)
    assert p2 == "a b c" and s2 == "d e f"


def test_interleaved_split_at_thought_and_strips_thoughts():
    text = ("Rivers carry sand. <think>where does it go?</think> It reaches the sea. Waves sort it. "
            "<think>by size</think> Beaches form from the sorted grains over many years.")
    prefix, suffix, thought = split_interleaved(text, "<think>", "</think>", prefix_words=12, suffix_words=50, where="x:1")
    assert prefix == "Rivers carry sand. It reaches the sea. Waves sort it."
    assert suffix == "Beaches form from the sorted grains over many years."
    assert thought == "by size"
    with pytest.raises(DataError, match="x:1"):
        split_interleaved("a <think>b c", "<think>", "</think>", 8, 50, "x:1")


def test_task_reads_prefix_suffix_columns_and_parquet(tmp_path):
    import pandas as pd

    rows = [{"id": "a", "prefix": "one two", "suffix": "three", "source": "s"},
            {"id": "b", "prefix": "four", "suffix": "five six", "source": "s"}]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    items = ChunksTask({"data": str(tmp_path / "d.parquet")}).items()
    assert [(i.id, i.prefix, i.suffix, i.cluster) for i in items] == [("a", "one two", "three", "s"), ("b", "four", "five six", "s")]


def test_duplicate_ids_and_missing_text_name_the_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": "a", "text": "x y z w"}) + "\n" + json.dumps({"id": "a", "text": "p q r s"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:2: duplicate id"):
        ChunksTask({"data": str(f)}).items()
    f.write_text(json.dumps({"id": "a", "body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: missing or empty text column 'text'"):
        ChunksTask({"data": str(f)}).items()


def test_interleaved_rows_with_custom_tags(tmp_path):
    f = tmp_path / "d.jsonl"
    text = "Rivers carry sand. [[ where to? ]] It reaches the sea at last."
    f.write_text(json.dumps({"id": "a", "text": text}) + "\n")
    (item,) = ChunksTask({"data": str(f), "think_open": "[[", "think_close": "]]", "prefix_words": 3}).items()
    assert (item.prefix, item.suffix, item.meta) == ("Rivers carry sand.", "It reaches the sea at last.",
                                                     {"reference_thought": "where to?"})
    (plain,) = ChunksTask({"data": str(f)}).items()  # with the default tags the brackets are text
    assert plain.meta == {} and "[[ where to? ]]" in plain.prefix + " " + plain.suffix

