"""The built-in interventions beyond the reference four: their thoughts as exact token ids (a
scripted character-level backend), parameterised conditions, bad input, and one end-to-end probe
run on tiny-qwen3 with every new condition, its records recomputed to the summary."""

import json
import math
import random

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.pipeline import ArmContext, RunContext, applicable
from harness.seeding import derive_seed
from harness.types import Arm, Completion, Item, Thought

ITEMS = [Item("i0", "In 1850 the city of Paris grew fast. Later London and 42 ships came.", " After that",
              meta={"reference_thought": "  the ships come next "}),
         Item("i1", "Rivers carry sand to the sea.", " Waves sort it")]


class CharBackend:
    """One token per character (id = code point + ``offset``), plus ``extra`` multi-character
    tokens that only decode (the arm sampled them; encode never makes them). ``replies``: what
    ``generate`` answers, per prompt text, for a teacher."""

    name = "chars"

    def __init__(self, offset=0, extra=None, replies=None):
        self.offset, self.extra, self.replies = offset, dict(extra or {}), replies or (lambda prompt: "")
        self.prompts, self.closed = [], False

    def encode(self, text):
        return [ord(c) + self.offset for c in text]

    def decode(self, ids):
        return "".join(self.extra[i] if i in self.extra else chr(i - self.offset) for i in ids)

    def generate(self, requests, progress=None):
        out = []
        for r in requests:
            prompt = self.decode(r.prompt_ids)
            self.prompts.append(prompt)
            text = self.replies(prompt)
            out.append([Completion(self.encode(text), text, "stop")] * r.n)
        return out

    def close(self):
        self.closed = True


def _ctx(backend, arm="a", arms=("a", "b"), samples=2, items=ITEMS):
    config = {"seed": 0, "samples": samples, "thought_max_tokens": 8, "temperature": 1.0, "top_p": 0.95,
              "options": {}}
    run_arms = [Arm(name=n, model="random:tiny-qwen3") for n in arms]
    run = RunContext("t", config, run_arms, list(items), None, None, {}, lambda a: backend, quiet=True,
                     arms_table={a.name: a for a in run_arms})
    return ArmContext(next(a for a in run_arms if a.name == arm), backend, config, list(items), run)


def _normal(backend, texts):
    """``needed["normal"]`` from texts: item i's samples are ``texts[i]``."""
    return {"normal": {item.id: [Thought(backend.encode(t), t, closed=True) for t in row]
                       for item, row in zip(ITEMS, texts)}}


def _ids(out):
    return {k: [t.token_ids for t in v] for k, v in out.items()}


def test_truncated_keeps_the_first_fraction_of_tokens():
    from plugins.interventions.truncated import TruncatedThought

    b = CharBackend()
    needed = _normal(b, [["abcdefg", "abcd"], ["", "xy"]])
    for fraction, want in ((0.5, [["abc", "ab"], ["", "x"]]), (0.0, [["", ""], ["", ""]]),
                           (1.0, [["abcdefg", "abcd"], ["", "xy"]]), (0.25, [["a", "a"], ["", ""]])):
        out = TruncatedThought({"fraction": fraction}).thoughts(_ctx(b), ITEMS, 2, needed)
        assert _ids(out) == {"i0": [b.encode(t) for t in want[0]], "i1": [b.encode(t) for t in want[1]]}
        assert out["i0"][0].text == want[0][0] and out["i0"][0].source_item == "i0"


def test_shuffled_is_a_seeded_permutation_of_the_own_tokens():
    from plugins.interventions.shuffled import ShuffledThought

    b = CharBackend()
    needed = _normal(b, [["abcdefgh", "hello world"], ["xyz", ""]])
    out = ShuffledThought().thoughts(_ctx(b), ITEMS, 2, needed)
    for item in ITEMS:
        for s in range(2):
            want = list(needed["normal"][item.id][s].token_ids)
            random.Random(derive_seed(0, "a", item.id, "shuffled", s)).shuffle(want)
            assert out[item.id][s].token_ids == want
    assert out["i0"][0].token_ids != b.encode("abcdefgh")
    assert _ids(ShuffledThought().thoughts(_ctx(b), ITEMS, 2, needed)) == _ids(out)  # seeded


def test_filler_has_the_own_thoughts_token_count():
    from plugins.interventions.filler import FillerThought

    b = CharBackend()
    needed = _normal(b, [["abcde", ""], ["xyz", "q"]])
    out = FillerThought({"unit": "."}).thoughts(_ctx(b), ITEMS, 2, needed)
    assert _ids(out) == {"i0": [[46] * 5, []], "i1": [[46] * 3, [46]]}
    assert out["i0"][0].text == "....."
    out = FillerThought({"unit": " ab"}).thoughts(_ctx(b), ITEMS, 2, needed)
    assert out["i0"][0].token_ids == [32, 97, 98, 32, 97]  # the unit cycled and cut to 5 tokens


def test_teacher_is_the_datas_thought_and_skips_items_without_one():
    from plugins.interventions.teacher import TeacherThought

    b = CharBackend(offset=3)
    plugin = TeacherThought()
    assert applicable(plugin, ITEMS) == [ITEMS[0]]
    out = plugin.thoughts(_ctx(b), [ITEMS[0]], 2, {})
    assert _ids(out) == {"i0": [b.encode("the ships come next")] * 2}
    assert out["i0"][0].text == "the ships come next"


def test_cross_arm_uses_the_donors_ids_or_reencodes_its_text():
    from plugins.interventions.cross_arm import CrossArmThought, donor_arm

    assert donor_arm(["a", "b", "c"], "a", None) == "b" and donor_arm(["a", "b", "c"], "c", None) == "a"
    assert donor_arm(["a", "b", "c"], "a", "c") == "c" and donor_arm(["a", "b", "c"], "c", "c") == "a"
    recipient = CharBackend()
    for donor_backend, reencoded in ((CharBackend(), False), (CharBackend(offset=5000), True)):
        donated = _normal(donor_backend, [["Go on", "now"], ["sand", "sea"]])["normal"]
        ctx = _ctx(recipient, arm="a")
        asked = []
        ctx.arm_thoughts = lambda arm_name, cond: asked.append((arm_name, cond)) or donated
        out = CrossArmThought({"donor": None}).thoughts(ctx, ITEMS, 2, _normal(recipient, [["x", "y"], ["z", "w"]]))
        assert asked == [("b", "normal")]
        assert out["i0"][0].token_ids == (recipient.encode("Go on") if reencoded else donated["i0"][0].token_ids)
        assert _ids(out)["i1"] == [recipient.encode("sand"), recipient.encode("sea")]
        assert out["i1"][1].text == "sea"
        assert all(t.info == {"source_arm": "b", "reencoded": reencoded} for row in out.values() for t in row)


def test_cross_arm_reencoding_changes_the_ids_when_vocabularies_differ():
    from plugins.interventions.cross_arm import CrossArmThought

    recipient, donor = CharBackend(offset=7), CharBackend(offset=5000)
    donated = {i.id: [Thought(donor.encode("ab"), "ab")] for i in ITEMS}
    ctx = _ctx(recipient, arm="b")
    ctx.arm_thoughts = lambda arm_name, cond: donated
    out = CrossArmThought({"donor": None}).thoughts(ctx, ITEMS, 1, {})
    assert out["i0"][0].token_ids == [97 + 7, 98 + 7] and out["i0"][0].info["source_arm"] == "a"
    assert donated["i0"][0].token_ids == [5097, 5098]


def test_corrupted_swaps_numbers_and_names_from_the_passages():
    from plugins.interventions.corrupted import CorruptedThought, passage_pool

    assert passage_pool(i.prefix for i in ITEMS) == {"number": ["1850", "42"], "word": ["London", "Paris"]}
    b = CharBackend(extra={9000: "we saw "})  # a multi-character token the arm sampled
    needed = {"normal": {"i0": [Thought([9000] + b.encode("Paris in 1850."), "we saw Paris in 1850."),
                                Thought(b.encode("Nothing here to change."), "Nothing here to change.")],
                         "i1": [Thought(b.encode("The year 42, then London"), ""),
                                Thought([], "")]}}
    out = CorruptedThought().thoughts(_ctx(b), ITEMS, 2, needed)
    # the only other number / name in the pool is the replacement; untouched tokens keep their ids
    assert out["i0"][0].token_ids == [9000] + b.encode("London in 42.")
    assert out["i0"][0].text == "we saw London in 42." and out["i0"][0].info == {"replaced": 2}
    assert out["i0"][1].token_ids == b.encode("Nothing here to change.") and out["i0"][1].info == {"unchanged": True}
    assert out["i1"][0].token_ids == b.encode("The year 1850, then Paris")  # "The" starts the sentence: kept
    assert out["i1"][1].token_ids == [] and out["i1"][1].info == {"unchanged": True}


def test_paraphrase_encodes_the_teachers_text_with_the_recipients_tokenizer():
    from plugins.interventions.paraphrase import ParaphrasedThought

    def reply(prompt):
        note = prompt.split("Note: ", 1)[1].split("\n\nRewritten note:", 1)[0]
        return " " + note.upper() + " "

    teacher, recipient = CharBackend(offset=100, replies=reply), CharBackend(offset=1)
    plugin = ParaphrasedThought({"arm": "teacher-arm", "max_tokens": 16, "chat": False})
    plugin._backend, plugin._owned = teacher, True  # as _teacher() would make it from the backends registry
    needed = _normal(recipient, [["go on", ""], ["go on", "sea"]])
    out = plugin.thoughts(_ctx(recipient), ITEMS, 2, needed)
    assert _ids(out) == {"i0": [recipient.encode("GO ON"), []], "i1": [recipient.encode("GO ON"), recipient.encode("SEA")]}
    assert out["i0"][0].info == {"paraphrased_by": "teacher-arm"} and out["i0"][0].text == "GO ON"
    assert len(teacher.prompts) == 2  # each distinct non-empty thought once
    plugin.close()
    assert teacher.closed


def test_condition_specs_are_parsed_and_normalised():
    from harness.conditions import create, parse_condition
    from harness.errors import BadInput
    from harness.plugins import registry

    classes = registry("interventions").classes
    c = parse_condition("truncated:fraction=.25", classes)
    assert (c.name, c.plugin, c.options, c.given) == ("truncated:fraction=0.25", "truncated", {"fraction": 0.25},
                                                     ("fraction",))
    assert parse_condition("truncated", classes).name == "truncated"
    assert parse_condition("blank", classes).name == "blank"
    assert create(classes["truncated"], "truncated:fraction=0.75").fraction == 0.75
    p = parse_condition("paraphrase:max_tokens=8,arm=tiny-qwen3", classes)
    assert p.name == "paraphrase:arm=tiny-qwen3,max_tokens=8" and p.options["chat"] is False
    for bad, needle in (("truncated:fraction", "expected NAME:KEY=VALUE"), ("blank:x=1", "takes no options"),
                        ("truncated:fraction=2", "must be in [0.0, 1.0]"), ("paraphrase", "needs an option"),
                        ("truncated:size=3", "unknown truncated intervention option 'size'")):
        with pytest.raises(BadInput, match=needle.replace("[", r"\[").replace("]", r"\]")):
            parse_condition(bad, classes)


def test_report_orders_conditions_as_given():
    from reports.probe import in_run_order

    recs = [{"arm": "a", "condition": c, "item_id": "i", "sample": 0} for c in ("filler", "normal", "x", "blank")]
    manifest = {"config": {"interventions": ["normal", "blank", "filler"]}}
    assert [r["condition"] for r in in_run_order(recs, manifest)] == ["normal", "blank", "filler", "x"]


# -- bad input: one line, exit 2, nothing written -------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--intervention", "truncated:fractoin=0.5"], "unknown truncated intervention option 'fractoin'; valid: fraction"),
    (["--intervention", "truncated:fraction=2"], "fraction='2' must be in [0.0, 1.0]"),
    (["--intervention", "cross_arm"], "the cross_arm intervention needs at least 2 arms"),
    (["--intervention", "paraphrase"], "needs an option: --intervention paraphrase:arm=..."),
    (["--intervention", "paraphrase:arm=no-such-arm"], "unknown arm 'no-such-arm'"),
    (["--intervention", "blank:x=1"], "intervention 'blank' takes no options"),
    (["--intervention", "truncated:fraction=0.5", "--intervention", "truncated:fraction=.50"],
     "condition 'truncated:fraction=0.5' given twice"),
    (["--intervention", "cross_arm:donor=nobody", "--arm", "random:tiny-qwen3"], "donor='nobody' is not an arm"),
])
def test_bad_condition_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet", "--limit", "2",
                                   "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not out.exists()


def test_list_shows_intervention_options():
    res = CliRunner().invoke(cli, ["list", "interventions"])
    assert res.exit_code == 0
    assert "fraction: number in [0.0, 1.0], default 0.5" in res.output and "arm: text, required" in res.output


# -- end to end on tiny-qwen3 ---------------------------------------------------------------------

NEW = ("cross_arm", "teacher", "truncated:fraction=0.25", "truncated:fraction=0.75", "shuffled", "filler",
       "corrupted", "paraphrase:arm=tiny-qwen3,max_tokens=4")


def _data(tmp_path):
    """Three interleaved rows (a teacher thought each) and one plain passage (none: skipped by teacher)."""
    from tests.helpers import write_interleaved

    path = write_interleaved(tmp_path / "d.jsonl", n=3, sentences=4)
    with open(path, "a") as fh:
        fh.write(json.dumps({"id": "plain", "text": "In 1850 the port of Lisbon shipped 42 crates of salt to "
                                                     "Bristol every week, and Porto sent wine."}) + "\n")
    return path


def _lines(path):
    return [json.loads(line) for line in open(path)]


def test_probe_run_with_every_new_condition(tmp_path):
    pytest.importorskip("torch")
    from reports.compare import cell_items

    out = tmp_path / "run"
    args = ["run", "--arm", "tiny-qwen3", "--arm", "random:tiny-qwen3", "--judge", "lexical", "--quiet",
            "--data-file", str(_data(tmp_path)), "--samples", "2", "--thought-max-tokens", "6",
            "--suffix-max-tokens", "3", "--out", str(out), "--intervention", "normal"]
    for cond in NEW:
        args += ["--intervention", cond.replace("0.25", ".25")]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["interventions"] == ["normal", *NEW]
    assert manifest["config"]["condition_options"]["truncated:fraction=0.25"] == {"fraction": 0.25}
    assert manifest["skipped_items"] == {"teacher": ["plain"]}
    items = {r["id"]: r for r in _lines(out / "items.jsonl")}
    thoughts = {(r["arm"], r["condition"], r["item_id"], r["sample"]): r for r in _lines(out / "thoughts.jsonl")}
    records = _lines(out / "samples.jsonl")
    arms = ("tiny-qwen3", "random:tiny-qwen3")
    from plugins.backends.hf import HFBackend

    tok = HFBackend(Arm(name="t", model="random:tiny-qwen3", options={"seed": 0}))
    for arm in arms:
        other = arms[1 - arms.index(arm)]
        for item in items:
            for s in range(2):
                own = thoughts[(arm, "normal", item, s)]
                assert "info" not in own  # conditions that say nothing record what they always did
                t = lambda cond: thoughts[(arm, cond, item, s)]
                assert t("truncated:fraction=0.25")["token_ids"] == own["token_ids"][:math.floor(len(own["token_ids"]) * .25)]
                assert t("truncated:fraction=0.75")["token_ids"] == own["token_ids"][:math.floor(len(own["token_ids"]) * .75)]
                assert sorted(t("shuffled")["token_ids"]) == sorted(own["token_ids"])
                assert len(t("filler")["token_ids"]) == len(own["token_ids"])
                assert set(t("filler")["token_ids"]) <= set(tok.encode("."))
                assert t("cross_arm")["token_ids"] == thoughts[(other, "normal", item, s)]["token_ids"]
                assert t("cross_arm")["info"] == {"source_arm": other, "reencoded": False}  # one tokenizer
                assert set(t("corrupted")["info"]) <= {"replaced", "unchanged"}
                assert t("paraphrase:arm=tiny-qwen3,max_tokens=4")["info"] == {"paraphrased_by": "tiny-qwen3"}
                if item == "plain":
                    assert (arm, "teacher", item, s) not in thoughts
                else:
                    assert t("teacher")["token_ids"] == tok.encode(items[item]["meta"]["reference_thought"])
    conds = {r["condition"] for r in records}
    assert conds == {"normal", *NEW}
    assert len(records) == 2 * 2 * (4 * 8 + 3)  # arms x samples x (items x conditions + teacher's 3 items)
    assert all(("thought_info" in r) == (r["condition"] in ("cross_arm", "corrupted", NEW[-1])) for r in records)

    # the summary's numbers from the records: cell means of item means, normal - condition deltas
    summary = json.loads((out / "summary.json").read_text())
    cells = cell_items(records, "suffix_logprob")
    mean = lambda v: sum(v) / len(v)
    for row in (r for r in summary["metrics"] if r["metric"] == "suffix_logprob"):
        per_item = cells[(row["arm"], row["condition"])]
        assert row["estimate"] == pytest.approx(mean([mean(v) for v in per_item.values()]), abs=1e-9)
    sens = [r for r in summary["comparisons"] if r["kind"] == "conditions" and r["metric"] == "suffix_logprob"]
    assert [r["condition_b"] for r in sens if r["arm_a"] == "tiny-qwen3"] == list(NEW)  # command-line order
    for r in sens:
        a, b = cells[(r["arm_a"], "normal")], cells[(r["arm_a"], r["condition_b"])]
        shared = sorted(set(a) & set(b))
        assert r["n_shared"] == len(shared)
        assert r["delta"] == pytest.approx(mean([mean(a[i]) - mean(b[i]) for i in shared]), abs=1e-9)
    notes = {(n["arm"], n["condition"]): n for n in summary["thought_notes"]}
    assert notes[("tiny-qwen3", "teacher")]["skipped_items"] == 1
    assert notes[("tiny-qwen3", "cross_arm")]["info"]["reencoded"] == "0 of 8"
    report = (out / "report.md").read_text()
    assert "## Thought provenance" in report
    assert any("teacher" in line and "1 of 4" in line for line in report.splitlines() if line.startswith("| tiny"))
    assert report.index("normal - truncated:fraction=0.25") < report.index("normal - paraphrase:arm=")

    # resumable: the cross_arm records of one arm are made again from stored thoughts alone
    kept = [r for r in records if not (r["arm"] == "tiny-qwen3" and r["condition"] == "cross_arm")]
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    again = {(r["arm"], r["condition"], r["item_id"], r["sample"]): r for r in _lines(out / "samples.jsonl")}
    assert len(again) == len(records)
    for r in records:  # a chunk made in another batch may differ in the last bits of its log-likelihood
        new = again[(r["arm"], r["condition"], r["item_id"], r["sample"])]
        assert new["suffix_logprob"] == pytest.approx(r["suffix_logprob"], abs=1e-6)
        assert {k: v for k, v in new.items() if k != "suffix_logprob"} == {k: v for k, v in r.items()
                                                                          if k != "suffix_logprob"}
    assert len(_lines(out / "thoughts.jsonl")) == len(thoughts)  # no thought made twice
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "0 new records (0 tokens generated" in res.output
