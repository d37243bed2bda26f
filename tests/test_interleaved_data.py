"""Interleaved-thinking data tools: the format, row checks, the audit, `harness data validate` and
`harness data augment` (with the random-init tiny teacher: its thoughts are gibberish, so these
tests check the bookkeeping, never the quality)."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.types import Completion
from tasks.chunks import ChunksTask
from tasks.loading import DataError, read_rows
from tasks.thought_spans import MalformedThoughts, Thought, parse_thoughts, strip_thoughts
from training.interleaved import audit, augment_rows, check_row, format_audit, insertion_points, normalise_ws

RAW = [
    {"id": "a", "source": "s1", "text": "Rivers carry sand to the sea. Waves sort the grains by size. "
                                        "Long beaches slowly grow. Storms move them again each winter."},
    {"id": "b", "source": "s1", "text": "Heat makes metal expand. Bridges therefore have joints.\n\n"
                                        "Without them the deck could buckle in summer."},
    {"id": "c", "source": "s2", "text": "one sentence with no boundary at all"},
]


def _invoke(args):
    return CliRunner().invoke(cli, args)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


# -- the format --------------------------------------------------------------------------------
def test_parse_thoughts_spans_offsets_segments_and_plain_text():
    text = "<think>start</think> A b. <think>why c</think> C d."
    parsed = parse_thoughts(text)
    assert parsed.thoughts == (Thought(0, 20, "start"), Thought(26, 46, "why c"))
    assert [text[t.start:t.end] for t in parsed.thoughts] == ["<think>start</think>", "<think>why c</think>"]
    assert parsed.segments() == [("thought", "start"), ("text", " A b. "), ("thought", "why c"), ("text", " C d.")]
    assert parsed.plain() == " A b.  C d." and parsed.stripped() == " A b. C d."  # spaces before a span go with it
    assert parsed.plain(0, 26) == " A b. " and parsed.plain(20) == " A b.  C d." and parsed.plain(46) == " C d."
    assert parse_thoughts("no thoughts here").segments() == [("text", "no thoughts here")]
    assert parse_thoughts("no thoughts here").thoughts == ()
    custom = parse_thoughts("x [[t]] y", "[[", "]]")
    assert custom.segments() == [("text", "x "), ("thought", "t"), ("text", " y")] and custom.plain() == "x  y"
    assert parse_thoughts("x <think>t</think> y", "[[", "]]").thoughts == ()  # other tags are plain text
    with pytest.raises(ValueError, match="non-empty"):
        parse_thoughts("x", "", "]]")


@pytest.mark.parametrize("text,kind", [
    ("a </think> b", "unbalanced tags"),
    ("a <think>b", "unbalanced tags"),
    ("a <think>b</think> c</think>", "unbalanced tags"),
    ("a <think>b <think>c</think> d</think>", "nested tags"),
    ("a <think> \n </think> b", "empty thought"),
    ("a <think></think> b", "empty thought"),
])
def test_malformed_tags_raise_a_readable_reason(text, kind):
    with pytest.raises(MalformedThoughts) as info:
        parse_thoughts(text)
    assert isinstance(info.value, DataError) and info.value.reason.startswith(kind + ":")
    check = check_row({"text": text})
    assert not check["ok"] and check["problems"][0].split(":")[0] == kind


def test_strip_and_normalise():
    text = "A b. <think>t one</think> C d.\n\n<think>t two</think>\nE."
    assert strip_thoughts(text) == "A b. C d.\n\n\nE."
    assert normalise_ws(strip_thoughts(text)) == "A b. C d. E."
    assert normalise_ws("  a\t b \n") == "a b"


def test_check_row_numbers_by_hand():
    # original: 6 words, "the" twice; stripped text has one "the" and "a" instead: 5 of 6 covered
    row = {"text": "the cat <think>t one</think> sat on a mat", "original": "the cat sat on the mat"}
    c = check_row(row)
    assert c["ok"] is False and c["preserved"] is False
    assert c["problems"] == ["not preserved: word 5 is 'a', expected 'the'"]
    assert (c["thoughts"], c["thought_words"], c["text_words"], c["length"]) == (1, 2, 6, 8)
    assert c["raw_word_coverage"] == pytest.approx(5 / 6)

    ok = check_row({"text": "A b.\n<think>x y z</think>  C.", "original": "A b. C."})
    assert ok["ok"] and ok["preserved"] is True and ok["raw_word_coverage"] == 1.0
    assert (ok["thoughts"], ok["thought_words"], ok["text_words"]) == (1, 3, 3)

    bare = check_row({"text": "A. <think>x</think> B."})
    assert bare["ok"] and bare["preserved"] is None and bare["raw_word_coverage"] is None

    assert check_row({"text": "No thought."})["problems"] == ["no thoughts"]
    assert check_row({"other": 1})["problems"][0].startswith("missing text")
    long = check_row({"text": "A. <think>x</think> B."}, max_tokens=21, count_tokens=len)
    assert long["length"] == 22 and long["problems"] == ["too long: 22 > 21"]
    assert check_row({"text": "A. <think>x</think> B."}, max_tokens=3)["ok"]  # 3 words


def test_audit_counts_and_table():
    rows = [
        {"text": "A. <think>one two</think> B.", "original": "A. B.", "_source": "f.jsonl", "_line": 1},
        {"text": "A. <think>one</think> B. <think>two three four</think> C.", "original": "A. B. C.",
         "_source": "f.jsonl", "_line": 2},
        {"text": "A. <think>x</think> B. C.", "original": "A. B. D.", "_source": "f.jsonl", "_line": 3},
        {"text": "A. <think>x B.", "_source": "f.jsonl", "_line": 5},
        {"text": "Nothing to see.", "_source": "f.jsonl", "_line": 6},
    ]
    s = audit(rows)
    assert (s["rows"], s["valid_rows"], s["malformed_rows"]) == (5, 2, 3)
    assert s["problems"] == {"no thoughts": 1, "not preserved": 1, "unbalanced tags": 1}
    assert s["thoughts"] == 3 and s["mean_thoughts_per_row"] == 1.5
    assert s["mean_thought_words"] == pytest.approx(6 / 3)
    assert s["mean_raw_word_coverage"] == pytest.approx((1 + 1 + 2 / 3) / 3)  # rows with an original
    assert s["max_length"] == 7 and s["length_unit"] == "words"
    assert s["malformed"][0].startswith("f.jsonl:3: not preserved")
    assert s["malformed"][1].startswith("f.jsonl:5: unbalanced tags")
    assert s["malformed"][2] == "f.jsonl:6: no thoughts"
    table = format_audit(s)
    assert "| 5 | 2 | 3 | 1.50 | 2.0 | 88.9% | 7 words |" in table and "f.jsonl:6: no thoughts" in table
    assert audit(rows, show=1)["malformed"] == s["malformed"][:1]
    assert "... and 2 more" in format_audit(audit(rows, show=1))
    assert audit([{"text": "A. <think>x</think> B."}], count_tokens=len)["length_unit"] == "tokens"


def test_malformed_rows_from_a_file_name_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "A. <think>x</think> B."}) + "\n\n"
                    + json.dumps({"text": "A. </think> B."}) + "\n")
    s = audit(read_rows(str(path)))
    assert s["malformed"] == [f"{path}:3: unbalanced tags: </think> at char 3 without <think>"]


@pytest.mark.parametrize("text,tags,reason", [
    ("Rivers carry sand. <think></think> It reaches the sea.", {}, "empty thought: the <think> at char 19"),
    ("Rivers carry sand. <think> \t</think> It reaches the sea.", {}, "empty thought: the <think> at char 19"),
    ("Rivers carry sand. <think>a <think>b</think> c</think> Sea.", {}, "nested tags: <think> at char 28"),
    ("Rivers carry sand. <think>where to? It reaches the sea.", {}, "unbalanced tags: <think> at char 19 is never"),
    ("Rivers carry sand.</think> It reaches the sea.", {}, "unbalanced tags: </think> at char 18 without"),
    ("Rivers carry sand. [[]] It reaches the sea.", {"open": "[[", "close": "]]"}, "empty thought: the [[ at char 19"),
    ("Rivers carry sand. [[a [[b]] It reaches the sea.", {"open": "[[", "close": "]]"}, "nested tags: [[ at char 23"),
])
def test_chunks_task_and_validate_refuse_the_same_rows_for_the_same_reason(tmp_path, text, tags, reason):
    """One parser: the ``chunks`` task (eval items, DPO/RLMT examples) and ``harness data validate``
    (SFT's check) give the same answer, naming the file's line, for the same tags."""
    path = _write(tmp_path / "d.jsonl", [{"id": "ok", "text": "A b c. <think>fine</think> D e f."},
                                         {"id": "bad", "text": text}])
    open_tag, close_tag = tags.get("open", "<think>"), tags.get("close", "</think>")
    with pytest.raises(DataError) as info:
        ChunksTask({"data": str(path), "think_open": open_tag, "think_close": close_tag}).items()
    assert info.value.message.startswith(f"{path}:2: {reason}")
    res = _invoke(["data", "validate", str(path), "--think-open", open_tag, "--think-close", close_tag])
    assert res.exit_code == 1 and f"{path}:2: {reason}" in res.output
    assert info.value.message in res.output  # the very same words
    if not tags:
        assert f"{path}:1" not in res.output  # (with the custom tags row 1 has no thoughts: plain text)


def test_empty_thought_tags_are_bad_options(tmp_path):
    res = _invoke(["data", "validate", "sample", "--think-open", ""])
    assert res.exit_code == 2 and "--think-open: a thought tag cannot be empty" in res.output
    from harness.errors import BadInput

    with pytest.raises(BadInput, match="think_close is empty"):
        ChunksTask({"think_close": ""})


def test_insertion_points_at_sentence_ends():
    text = "One two three. Four five six seven. Eight nine. Ten eleven twelve thirteen. Fourteen."
    assert [text[:p].split()[-1] for p in insertion_points(text, 4)] == ["three.", "seven.", "nine."]
    short = "Short one. Then a second sentence here."
    assert [short[:p] for p in insertion_points(short, 60)] == ["Short one."]  # one, near the middle
    assert insertion_points("no boundary at all", 4) == []
    assert insertion_points("Dr. smith said 3.5 is fine. Yes.", 2) == [len("Dr. smith said 3.5 is fine.")]


# -- harness data validate ---------------------------------------------------------------------
def test_validate_sample_exits_0_and_shows_numbers():
    res = _invoke(["data", "validate", "sample"])
    assert res.exit_code == 0, res.output
    assert "| 32 | 32 | 0 | 4.91 | 13.1 | 100.0% | 368 words |" in res.output
    js = json.loads(_invoke(["data", "validate", "sample", "--json"]).output)
    assert js["rows"] == js["valid_rows"] == 32 and js["mean_raw_word_coverage"] == 1.0
    assert 3 * 32 <= js["thoughts"] <= 6 * 32


def test_packaged_sample_thoughts_are_short_and_strip_back_exactly():
    from importlib import resources

    rows = read_rows(str(resources.files("tasks").joinpath("data/sample_interleaved.jsonl")))
    raw = read_rows(str(resources.files("tasks").joinpath("data/sample_chunks.jsonl")))
    assert [r["id"] for r in rows] == [r["id"] for r in raw]
    for row, chunk in zip(rows, raw):
        assert row["original"] == chunk["text"] and strip_thoughts(row["text"]) == chunk["text"]
        thoughts = [t.content for t in parse_thoughts(row["text"]).thoughts]
        assert 3 <= len(thoughts) <= 6 and all(5 <= len(t.split()) <= 20 for t in thoughts)


def test_validate_broken_row_exits_1_naming_its_line(tmp_path):
    path = _write(tmp_path / "d.jsonl", [
        {"id": "x", "text": "A. <think>fine thought</think> B.", "original": "A. B."},
        {"id": "y", "text": "A. <think>unclosed B.", "original": "A. B."},
        {"id": "z", "text": "A. <think>t</think> B.", "original": "A. B."},
    ])
    out = tmp_path / "valid.jsonl"
    res = _invoke(["data", "validate", str(path), "--write-valid", str(out)])
    assert res.exit_code == 1, res.output
    assert f"{path}:2: unbalanced tags" in res.output and f"{path}:1" not in res.output
    assert [r["id"] for r in _read(out)] == ["x", "z"] and "_line" not in _read(out)[0]
    too_long = _invoke(["data", "validate", str(path), "--max-tokens", "3"])
    assert too_long.exit_code == 1 and f"{path}:1: too long: 4 > 3" in too_long.output


def test_validate_counts_tokens_with_an_arm(tmp_path):
    path = _write(tmp_path / "d.jsonl", [{"text": "A. <think>t</think> B."}])
    res = _invoke(["data", "validate", str(path), "--arm", "tiny-qwen3", "--json"])
    assert res.exit_code == 0, res.output
    js = json.loads(res.output[res.output.index("{"):])
    assert js["length_unit"] == "tokens" and js["max_length"] == len("A. <think>t</think> B.")  # byte-level


def test_validate_unknown_arm_and_missing_file():
    res = _invoke(["data", "validate", "sample", "--arm", "nope"])
    assert res.exit_code == 2 and "unknown arm 'nope'" in res.output
    assert _invoke(["data", "validate", "./no/such.jsonl"]).exit_code == 1


# -- harness data augment ----------------------------------------------------------------------
def test_augment_insert_with_tiny_teacher_writes_kept_and_rejected_and_resumes(tmp_path):
    data = _write(tmp_path / "raw.jsonl", RAW)
    out = tmp_path / "aug.jsonl"
    def args(path):
        return ["data", "augment", str(data), "--teacher", "random:tiny-qwen3", "--mode", "insert", "--out",
                str(path), "--every-words", "4", "--max-thought-tokens", "12", "--chunk-size", "2",
                "--keep-unfinished"]

    # by default a thought cut off at --max-thought-tokens rejects its row (the random model never closes one)
    strict = tmp_path / "strict.jsonl"
    res = _invoke(args(strict)[:-1])
    assert res.exit_code == 0, res.output
    assert not _read(strict)
    assert all(any(p.startswith("unfinished thought") or p.startswith("no insertion point") for p in r["problems"])
               for r in _read(tmp_path / "strict.rejected.jsonl"))

    res = _invoke(args(out))
    assert res.exit_code == 0, res.output
    rejected_path = tmp_path / "aug.rejected.jsonl"
    kept, rejected = _read(out), _read(rejected_path)
    assert sorted(r["id"] for r in kept + rejected) == ["a", "b", "c"] and kept  # seeded: a and b keep
    assert {r["id"]: r["problems"] for r in rejected}["c"] == ["no insertion point: the text has no sentence boundary"]
    by_id = {r["id"]: r for r in RAW}
    for row in kept:
        assert row["teacher"] == "random:tiny-qwen3" and row["mode"] == "insert"
        assert row["original"] == by_id[row["id"]]["text"] and row["source"] == by_id[row["id"]]["source"]
        assert check_row(row)["ok"] and check_row(row)["preserved"] is True
    assert f"this run: kept {len(kept)}, rejected {len(rejected)}" in res.output
    before = (out.read_text(), rejected_path.read_text())

    again = _invoke(args(out))  # resume: every row is done, nothing is generated or written
    assert again.exit_code == 0 and "this run: kept 0, rejected 0; skipped 3" in again.output
    assert (out.read_text(), rejected_path.read_text()) == before

    # same seed in a fresh file: the same thoughts (seeds derive from seed, row id and point)
    out2 = tmp_path / "aug2.jsonl"
    assert _invoke(args(out2)).exit_code == 0
    assert out2.read_text() == before[0]


def test_augment_resumes_after_a_cut_off_last_line(tmp_path):
    data = _write(tmp_path / "raw.jsonl", RAW[:2])
    out = tmp_path / "aug.jsonl"
    row = {"id": "a", "text": "Rivers carry sand to the sea. <think>x</think> Waves sort.", "original": "..."}
    out.write_text(json.dumps(row) + "\n" + '{"id": "b", "te')  # killed while writing row b
    res = _invoke(["data", "augment", str(data), "--teacher", "tiny-qwen3", "--mode", "insert", "--out", str(out),
                   "--every-words", "4", "--max-thought-tokens", "4"])
    assert res.exit_code == 0, res.output
    assert "skipped 1" in res.output
    ids = [r["id"] for r in _read(out)] + [r["id"] for r in _read(tmp_path / "aug.rejected.jsonl")]
    assert sorted(ids) == ["a", "b"]


def test_augment_rewrite_with_tiny_teacher_rejects_unpreserved_rows(tmp_path):
    data = _write(tmp_path / "raw.jsonl", RAW[:2])
    out = tmp_path / "rw.jsonl"
    res = _invoke(["data", "augment", str(data), "--teacher", "tiny-qwen3", "--out", str(out),
                   "--max-new-tokens", "24"])
    assert res.exit_code == 0, res.output
    assert "this run: kept 0, rejected 2" in res.output and _read(out) == []
    for row in _read(tmp_path / "rw.rejected.jsonl"):
        assert row["mode"] == "rewrite" and any(p.startswith("not preserved") for p in row["problems"])


def test_augment_unknown_teacher_is_bad_input(tmp_path):
    data = _write(tmp_path / "raw.jsonl", RAW)
    res = _invoke(["data", "augment", str(data), "--teacher", "nope", "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "--teacher: unknown arm 'nope'" in res.output
    assert not (tmp_path / "o.jsonl").exists()


class FakeTeacher:
    """A scripted teacher: characters as token ids, replies from ``reply(prompt)``; records requests."""

    def __init__(self, reply, chat=False):
        self.reply, self.requests = reply, []
        if chat:
            self.chat_prompt = lambda messages: "<user>" + messages[0]["content"] + "<assistant>"

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)

    def generate(self, requests, progress=None):
        self.requests += requests
        return [[Completion([], self.reply(self.decode(r.prompt_ids)), "stop")] for r in requests]


def test_rewrite_keeps_preserved_rows_and_rejects_changed_ones():
    good = "Heat makes metal expand. <think>So joints must allow for it.</think> Bridges therefore have joints."
    rows = [{"id": "g", "text": "Heat makes metal expand. Bridges therefore have joints.", "_line": 1},
            {"id": "h", "text": "Heat makes steel expand. Bridges therefore have joints.", "_line": 2}]
    teacher = FakeTeacher(lambda prompt: good + "\n</annotated>")
    kept, rejected = augment_rows(rows, teacher, seed=3, teacher="fake")
    assert [r["id"] for r, _ in kept] == ["g"] and kept[0][0]["text"] == good
    assert kept[0][0] == {"id": "g", "text": good, "original": rows[0]["text"], "teacher": "fake", "mode": "rewrite"}
    assert [r["id"] for r, _ in rejected] == ["h"]
    assert rejected[0][1]["problems"] == ["not preserved: word 3 is 'metal', expected 'steel'"]
    prompt = teacher.decode(teacher.requests[0].prompt_ids)
    assert prompt.endswith("<annotated>\n") and rows[0]["text"] in prompt
    assert teacher.requests[0].temperature == 0.7 and teacher.requests[0].top_p == 0.95


def test_insert_uses_chat_template_and_rejects_bad_thoughts():
    rows = [{"id": "p", "text": "One two three. Four five six. Seven eight nine."}]
    replies = iter(["a useful  thought\n", "has <think> inside"])
    teacher = FakeTeacher(lambda prompt: next(replies), chat=True)
    kept, rejected = augment_rows(rows, teacher, mode="insert", every_words=3)
    prompts = [teacher.decode(r.prompt_ids) for r in teacher.requests]
    assert len(prompts) == 2 and all(p.startswith("<user>") and p.endswith("<assistant><think>") for p in prompts)
    assert "One two three.\n" in prompts[0] and "Four five six." not in prompts[0]
    assert teacher.requests[0].stop_strings == ("</think>",) and teacher.requests[0].max_new_tokens == 48
    assert not kept and rejected[0][1]["problems"][0].startswith("nested tags")
    assert rejected[0][0]["text"].startswith("One two three. <think>a useful thought</think> Four five six.")

    plain = FakeTeacher(lambda prompt: "fine")
    kept, _ = augment_rows(rows, plain, mode="insert", every_words=3, chat="auto", seed=1)
    assert kept[0][0]["text"] == ("One two three. <think>fine</think> Four five six. <think>fine</think> "
                                  "Seven eight nine.")
    assert plain.decode(plain.requests[0].prompt_ids).endswith("One two three. <think>")
    again = FakeTeacher(lambda prompt: "fine")
    augment_rows(rows, again, mode="insert", every_words=3, seed=1)
    assert [r.seeds for r in again.requests] == [r.seeds for r in plain.requests]
    assert len({s for r in plain.requests for s in r.seeds}) == 2
    empty = augment_rows(rows, FakeTeacher(lambda prompt: "  "), mode="insert", every_words=3)[1]
    assert empty[0][1]["problems"][0].startswith("empty thought")


def test_data_commands_import_without_torch():
    code = ("import sys, harness.cli, training.data_cli, training.interleaved; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
