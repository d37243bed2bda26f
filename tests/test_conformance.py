"""Every registered plugin, built-in or from the documentation's example packages, against its
kind's contract (harness.protocols), exercised for real on the tiny random model.

A plugin kind that needs something this machine lacks in tests (a server for the server backends,
a Hub dataset) says so in its skip reason; those are covered by their own test files."""

import importlib.util
import json
import types
from pathlib import Path

import pytest

from harness import plugins
from harness.checks import check_completions, check_items, check_thoughts, check_verdicts
from harness.errors import BadInput
from harness.protocols import KINDS, member, missing_members
from harness.types import Arm, GenRequest, Item, JudgePair, ScoreRequest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*/*.py"))
# Options the built-ins need (those declared required) or that keep them offline here.
JUDGE_OPTIONS = {"keyword": {"words": "the"}, "llm": {"arm": "tiny-qwen3"}}
TASK_OPTIONS = {"chunks": {}, "interleaved": {}, "gsm8k": {"data": "sample"}, "math500": {"data": "sample"},
                "gpqa_diamond": {"data": "sample"}, "olympiadbench": {"data": "sample"}, "search_fixture": {}}
NEEDS_SERVER = {"openai", "sglang"}


class _EP:
    def __init__(self, path):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        self._module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self._module)
        self.name, self.value = path.stem, path.stem
        self.dist = types.SimpleNamespace(name=path.parent.name, version="0.1.0")

    def load(self):
        return self._module


@pytest.fixture(autouse=True)
def examples_installed(monkeypatch):
    eps = [_EP(p) for p in EXAMPLES]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    plugins.reset()
    yield
    plugins.reset()


def _all(kind):
    plugins.reset()
    saved = plugins._entry_points
    plugins._entry_points = lambda: [_EP(p) for p in EXAMPLES]
    try:
        return plugins.registry(kind).names()
    finally:
        plugins._entry_points = saved
        plugins.reset()


def test_every_plugin_registered_and_nothing_broken():
    regs = plugins.registries()
    assert not plugins.broken_plugins(), plugins.broken_plugins()
    assert {"shuffled", "reversed", "question"} <= set(regs["interventions"].names())
    for kind in KINDS:
        for name, cls in regs[kind].classes.items():
            assert missing_members(cls, kind) == [], (kind, name)


@pytest.fixture(scope="module")
def backend():
    from plugins.backends.hf import HFBackend

    return HFBackend(Arm(name="tiny-qwen3", model="random:tiny-qwen3", options={"seed": 0}))


ITEMS = [Item(f"i{n}", f"the river carries sand number {n} to the sea", " where waves sort it", cluster=f"s{n % 2}",
              meta={"reference_thought": "the waves come next"} if n == 0 else {}) for n in range(3)]
# Conditions the built-ins need options for (those declared required), as --intervention writes them.
INTERVENTION_SPECS = {"paraphrase": "paraphrase:arm=tiny-qwen3,max_tokens=4"}


@pytest.mark.parametrize("name", _all("interventions"))
def test_intervention_returns_valid_thoughts_per_sample(name, backend):
    from harness.arms import load_arms
    from harness.conditions import create
    from harness.pipeline import ArmContext, RunContext, applicable, condition_order

    reg = plugins.registry("interventions")
    spec = INTERVENTION_SPECS.get(name, name)
    config = {"seed": 0, "samples": 2, "thought_max_tokens": 4, "temperature": 1.0, "top_p": 0.95,
              "options": {}, "interventions": [spec]}
    other = Arm(name="other", model=backend.arm.model)  # a second arm, for those that read another arm's thoughts
    run = RunContext("t", config, [backend.arm, other], ITEMS, None, None, reg.classes, lambda arm: backend,
                     quiet=True, arms_table=load_arms())
    ctx = ArmContext(backend.arm, backend, config, ITEMS, run)
    done = {}
    ctx.arm_thoughts = lambda arm_name, cond: done[cond]  # "another arm's": this arm's, already made

    def make(cond):
        plugin = create(reg.classes[cond.partition(":")[0]], cond)
        items = applicable(plugin, ITEMS)
        out = plugin.thoughts(ctx, items, 2, {r: done[r] for r in getattr(plugin, "requires", ())})
        check_thoughts(cond, out, items, 2)
        if getattr(plugin, "close", None):
            plugin.close()
        return items, out

    for cond in condition_order([spec], reg.classes):
        done[cond] = make(cond)[1]
    items, again = make(spec)
    assert [[t.token_ids for t in again[i.id]] for i in items] == [[t.token_ids for t in done[spec][i.id]]
                                                                   for i in items], "not repeatable from its seeds"
    ctx.close_bars()


@pytest.mark.parametrize("name", _all("judges"))
def test_judge_one_verdict_per_pair_config_and_unknown_options(name):
    from harness.arms import load_arms

    cls = plugins.registry("judges").get(name)
    judge = cls(dict(JUDGE_OPTIONS.get(name, {})), load_arms())
    pairs = [JudgePair("the waves sort the sand", "waves sort grains by size", "the river"),
             JudgePair("", "long beaches", "p"), JudgePair("a b c", "a b c", "")]
    check_verdicts(name, judge.judge(pairs), len(pairs))
    json.dumps(judge.config(), allow_nan=False)
    with pytest.raises(BadInput):
        cls(dict(JUDGE_OPTIONS.get(name, {}), no_such_option="1"), load_arms())
    for opt in getattr(cls, "options", ()):
        assert opt.help and opt.describe()


@pytest.mark.parametrize("name", _all("tasks"))
def test_task_items_unique_stable_and_config_json(name):
    if name not in TASK_OPTIONS:
        pytest.skip(f"{name}: needs a catalogue task name and its data (tests/test_lm_eval_bridge.py runs one)")
    cls = plugins.registry("tasks").get(name)
    task = cls(dict(TASK_OPTIONS[name]))
    items = task.items()
    check_items(name, items)
    assert [i.id for i in cls(dict(TASK_OPTIONS[name])).items()] == [i.id for i in items], "ids not stable"
    json.dumps(task.config(), allow_nan=False)
    with pytest.raises(BadInput):
        cls(dict(TASK_OPTIONS[name], no_such_option="1"))


@pytest.mark.parametrize("name", _all("backends"))
def test_backend_n_completions_in_seed_order(name, backend):
    if name in NEEDS_SERVER:
        pytest.skip(f"{name}: talks to a server (tests/test_{name}_backend.py runs it against one)")
    b = plugins.registry("backends").get(name)(backend.arm) if name != "hf" else backend
    prompt = b.encode("the river carries sand")
    reqs = [GenRequest(prompt, n=3, seeds=[1, 2, 3], max_new_tokens=5, temperature=1.0, top_p=1.0,
                       score_ids=b.encode(" to the sea")),
            GenRequest(prompt, n=3, seeds=[3, 1, 2], max_new_tokens=5, temperature=1.0, top_p=1.0)]
    outs = b.generate(reqs)
    check_completions(name, reqs, outs)
    first, second = ([c.token_ids for c in out] for out in outs)
    assert second == [first[2], first[0], first[1]], "sample i is not drawn with seeds[i]"
    scored = b.score([ScoreRequest(prompt, b.encode(" to the sea"))])
    assert len(scored[0]) == len(b.encode(" to the sea"))
    assert scored[0] == pytest.approx(outs[0][0].score_logprobs, abs=1e-4)


@pytest.mark.parametrize("name", _all("evals"))
def test_eval_defaults(name):
    from harness.runner import GEN_KEYS

    cls = plugins.registry("evals").get(name)
    allowed = {"samples", "limit", "interventions", "tasks", *GEN_KEYS}
    assert "samples" in cls.defaults and set(cls.defaults) <= allowed, set(cls.defaults) - allowed
    kind = member(cls, "evals", "conditions")
    assert kind in ("interventions", "evidence"), kind
    for key in cls.defaults.get("interventions", ()):
        plugins.registry(kind).get(key)


@pytest.mark.parametrize("name", _all("report_sections"))
def test_section_applies_is_a_bool(name):
    cls = plugins.registry("report_sections").get(name)
    for record_type in ("probe", "reasoning", "something_else"):
        manifest = {"record_type": record_type, "config": {"eval": "x", "arms": [], "samples": 1}}
        assert cls().applies(manifest) in (True, False)
