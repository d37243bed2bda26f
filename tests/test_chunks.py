import json

import pytest

from tasks.chunks import ChunksTask, sample_path, split_interleaved, split_text
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



# -- split_by=tokens: the reference study's split by one tokenizer's tokens ---------------------

def _byte_tokenizer():
    pytest.importorskip("transformers")
    from harness.modelspec import byte_tokenizer

    return byte_tokenizer()


def test_token_pieces_join_back_and_count_tokens():
    from tasks.chunks import TokenPieces

    tok = _byte_tokenizer()
    text = "Café au lait — naïve résumé.\n\nNext paragraph."
    pieces = TokenPieces(tok)(text)
    assert "".join(pieces) == text
    assert len(pieces) == len(tok(text, add_special_tokens=False)["input_ids"])  # é is two byte tokens
    for k in range(len(pieces)):  # a cut anywhere splits no character
        assert "".join(pieces[:k]) + "".join(pieces[k:]) == text
        assert "\ufffd" not in "".join(pieces[:k])
    p, s = split_text(text, 5, 4, TokenPieces(tok))
    assert text.startswith(p) and s in text and p == "Café"  # 5 tokens: C a f and the two bytes of é


def test_split_by_tokens_uses_the_named_tokenizer_and_config_says_so():
    tok = _byte_tokenizer()
    words = ChunksTask()
    task = ChunksTask({"split_by": "tokens", "tokenizer": "tiny-qwen3"})
    items = task.items()
    assert [i.id for i in items] == [i.id for i in words.items()]
    rows = [json.loads(line) for line in open(sample_path())]
    for item, row in zip(items, rows):
        ids = tok(item.prefix, add_special_tokens=False)["input_ids"]
        assert len(ids) <= 256 and len(tok(item.suffix, add_special_tokens=False)["input_ids"]) <= 128
        assert item.prefix in row["text"] and item.suffix in row["text"]
    assert any(len(tok(i.prefix, add_special_tokens=False)["input_ids"]) >= 250 for i in items)
    config = task.config()
    assert config["split_by"] == "tokens" and config["tokenizer"] == "tiny-qwen3"
    assert (config["prefix_tokens"], config["suffix_tokens"]) == (256, 128)
    assert "prefix_words" not in config and "suffix_words" not in config
    default = words.config()
    assert default["split_by"] == "words" and default["prefix_words"] == 288
    assert not {"tokenizer", "prefix_tokens", "suffix_tokens"} & set(default)
    short = ChunksTask({"split_by": "tokens", "tokenizer": "random:tiny-qwen3", "prefix_tokens": "40",
                        "suffix_tokens": "20"}).items()[0]
    assert len(short.prefix) <= 40 and len(short.suffix) <= 20  # bytes of ASCII text


def test_split_by_tokens_on_a_tokenizer_only_directory_and_interleaved_rows(tmp_path):
    tok = _byte_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    f = tmp_path / "d.jsonl"
    text = "Rivers carry sand. <think>where does it go?</think> It reaches the sea. Waves sort it by size."
    f.write_text(json.dumps({"id": "a", "text": text}) + "\n" + json.dumps({"id": "b", "text": "x" * 50}) + "\n")
    a, b = ChunksTask({"data": str(f), "split_by": "tokens", "tokenizer": str(tmp_path / "tok"),
                       "prefix_tokens": "30", "suffix_tokens": "12"}).items()
    assert (a.prefix, a.suffix, a.meta["reference_thought"]) == ("Rivers carry sand.", "It reaches t",
                                                                 "where does it go?")
    assert (b.prefix, b.suffix) == ("x" * 30, "x" * 12)


def test_split_by_tokens_refusals():
    from harness.errors import BadInput

    with pytest.raises(BadInput, match="split_by=tokens needs tokenizer="):
        ChunksTask({"split_by": "tokens"})
    with pytest.raises(BadInput, match="tokenizer applies to split_by=tokens"):
        ChunksTask({"tokenizer": "tiny-qwen3"})
    with pytest.raises(BadInput, match="prefix_tokens applies to split_by=tokens"):
        ChunksTask({"prefix_tokens": "100"})
    with pytest.raises(BadInput, match="suffix_words applies to split_by=words"):
        ChunksTask({"split_by": "tokens", "tokenizer": "tiny-qwen3", "suffix_words": "10"})
    with pytest.raises(BadInput, match="split_by='bytes'; valid: words, tokens"):
        ChunksTask({"split_by": "bytes"})
    with pytest.raises(BadInput, match="tokenizer='no-such-arm' is not an arm"):
        ChunksTask({"split_by": "tokens", "tokenizer": "no-such-arm"}).items()
