"""Training stages on the random-init tiny Qwen3 (CPU, seconds): unit checks of the losses and the
token bookkeeping, toy objectives that must move the right way, resume, and checkpoints as arms."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from training import dpo, rlmt  # noqa: E402
from training.common import Setup  # noqa: E402

TINY = "random:tiny-qwen3"
LETTER_E = {"words": "e", "match": "substring"}  # a toy reward the byte-level model can earn


def setup(tmp_path, name, **kw):
    return Setup(arm=kw.pop("arm", TINY), out=str(tmp_path / name), device="cpu", log_every=0, **kw)


# -- unit checks --------------------------------------------------------------------------
def test_shared_context_logprobs_equal_separate_rows_values_and_gradients():
    from harness.modelspec import load_model
    from harness.types import Arm
    from training.logprobs import continuation_logprobs

    model, tok, dev = load_model(Arm(name="t", model=TINY))
    model.train()  # dropout is 0 in the preset; train mode as in the training loops
    ctx_a, ctx_b = list(range(40, 70)), list(range(80, 95))
    pairs = [(ctx_a, [5, 6, 7, 8]), (ctx_a, [9, 10]), (ctx_b, [11, 12, 13]), (ctx_a, []), (ctx_a, [14, 15, 16]),
             (ctx_b, [17])]
    weights = [0.5, -1.0, 2.0, 0.0, 1.5, -0.3]

    def run(share):
        model.zero_grad(set_to_none=True)
        lps = continuation_logprobs(model, pairs, tok.pad_token_id, dev, grad=True, share_context=share,
                                    max_batch_tokens=2 * 34)  # chunks of two rows
        sum(w * lp.sum() for w, lp in zip(weights, lps)).backward()
        return [lp.detach() for lp in lps], {n: p.grad.clone() for n, p in model.named_parameters()}

    sep, sep_grad = run(False)
    shared, shared_grad = run(True)
    assert [len(x) for x in shared] == [4, 2, 3, 0, 3, 1]
    for a, b in zip(sep, shared):
        assert torch.allclose(a, b, atol=1e-5)
    for name, g in sep_grad.items():
        assert torch.allclose(g, shared_grad[name], atol=1e-6, rtol=1e-4), name


def test_dpo_loss_matches_hand_computation():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.5, -2.0])
    loss, margin = dpo.dpo_loss(pc, pr, rc, rr, beta=0.1)
    for i in range(2):
        m = (pc[i] - rc[i]) - (pr[i] - rr[i])
        assert margin[i].item() == pytest.approx(float(m))
        assert loss[i].item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.1 * float(m)))))


def test_win_scores_and_pick_pair():
    # 3 candidates: 0 beats 1 and 2, 1 ties 2; one invalid answer is dropped and counted
    scores, invalid = dpo.win_scores(3, [(0, 1, 1.0), (2, 0, 0.0), (1, 2, 0.5), (1, 2, None)])
    assert invalid == 1
    assert scores == [1.0, 0.25, 0.25]
    import random

    chosen, rejected = dpo.pick_pair(scores, random.Random(0))
    assert chosen == 0 and rejected in (1, 2)
    assert dpo.pick_pair([0.5, 0.5, 0.5], random.Random(0)) is None  # all equal: skipped
    assert dpo.pick_pair([0.5, None, None], random.Random(0)) is None


def test_every_pair_judged_in_random_orders():
    from plugins.judges.keyword import KeywordJudge
    from training.data import Example

    ex = Example("x", "prefix", "e", [1], [2])
    texts = ["e e", "e", "", "e e e"]
    verdicts = dpo.judge_candidates(KeywordJudge(LETTER_E), ex, texts, repeats=3, seed=0, step=0)
    assert len(verdicts) == 6 * 3
    assert {tuple(sorted(v[:2])) for v in verdicts} == {(i, j) for i in range(4) for j in range(i + 1, 4)}
    assert any(a > b for a, b, _ in verdicts) and any(a < b for a, b, _ in verdicts)  # both orders used
    scores, invalid = dpo.win_scores(4, verdicts)
    assert scores == [2 / 3, 1 / 3, 0.0, 1.0] and invalid == 0


def test_grpo_advantages():
    assert rlmt.group_advantages([1, 1, 1, 1]) == [0.0] * 4
    assert rlmt.group_advantages([0, 0, 0]) == [0.0] * 3
    assert rlmt.group_advantages([1, 0, 0, 1]) == [0.5, -0.5, -0.5, 0.5]
    # an invalid verdict gets no advantage and is not in the mean
    assert rlmt.group_advantages([1, None, 0, 0]) == pytest.approx([2 / 3, 0.0, -1 / 3, -1 / 3])


def test_masked_positions_get_zero_gradient():
    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0], requires_grad=True)
    ref = torch.tensor([-1.2, -1.0, -0.7, -2.0])
    mask = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss, kl = rlmt.token_loss(logp, ref, advantage=0.75, mask=mask, kl_coef=0.02, norm=176.0)
    loss.backward()
    assert logp.grad[1].item() == 0.0 and logp.grad[2].item() == 0.0
    # unmasked: d/dlogp [-A logp + c (e^(ref-logp) - (ref-logp) - 1)] / norm = (-A + c (1 - e^(ref-logp))) / norm
    for i in (0, 3):
        expect = (-0.75 + 0.02 * (1 - math.exp(ref[i].item() - logp[i].item()))) / 176.0
        assert logp.grad[i].item() == pytest.approx(expect, rel=1e-5)
    d = ref - logp.detach()
    assert kl == pytest.approx(float(((d.exp() - d - 1) * mask).sum()))


def test_rlmt_loss_uses_the_sampled_ids(tmp_path, monkeypatch):
    """The ids scored for the loss are exactly prompt | sampled thought + inserted close + sampled suffix."""
    import training.logprobs as lp_mod
    from plugins.backends.hf import HFBackend

    sampled, scored = [], []
    real_generate, real_lp = HFBackend.generate, lp_mod.continuation_logprobs

    def spy_generate(self, requests, progress=None):
        outs = real_generate(self, requests, progress)
        sampled.append([(r.prompt_ids, [c.token_ids for c in o]) for r, o in zip(requests, outs)])
        return outs

    def spy_lp(model, pairs, *a, grad=False, **k):
        if grad:
            scored.extend(pairs)
        return real_lp(model, pairs, *a, grad=grad, **k)

    monkeypatch.setattr(HFBackend, "generate", spy_generate)
    monkeypatch.setattr(lp_mod, "continuation_logprobs", spy_lp)
    cfg = rlmt.RLMTConfig(steps=1, prefixes_per_step=1, samples=3, thought_tokens=6, suffix_tokens=8, judge="keyword")
    rlmt.train(setup(tmp_path, "r", save_every=0), cfg, LETTER_E)
    (stage1,), stage2 = sampled[0], sampled[1]
    prompt, thoughts = stage1
    close = [ord(c) for c in "</think>"]  # the byte tokenizer: one id per byte, in byte order
    from harness.modelspec import byte_tokenizer

    close = byte_tokenizer()("</think>", add_special_tokens=False).input_ids
    assert len(scored) == 3
    for k, (ctx, cont) in enumerate(scored):
        suffix_prompt, (suffix,) = stage2[k]
        assert ctx == prompt
        assert suffix_prompt == prompt + thoughts[k] + close
        assert cont == thoughts[k] + close + suffix


# -- toy objectives -----------------------------------------------------------------------
def test_rlmt_reward_rises_on_a_toy_objective(tmp_path):
    cfg = rlmt.RLMTConfig(steps=30, samples=8, thought_tokens=8, suffix_tokens=24, lr=3e-3, max_grad_norm=1.0,
                          judge="keyword")
    out = rlmt.train(setup(tmp_path, "r", save_every=0), cfg, LETTER_E)
    m = json.loads((out.root / "metrics.json").read_text())
    steps = m["steps"]
    first = sum(s["reward_mean"] for s in steps[:5]) / 5
    last = sum(s["reward_mean"] for s in steps[-5:]) / 5
    assert last > first + 0.3, (first, last)
    for key in ("reward_mean", "reward_std", "mixed_groups", "all_zero_groups", "all_one_groups", "invalid_rate",
                "thought_length_drift", "suffix_length_drift", "artifact_rate", "kl", "step_s"):
        assert key in steps[-1]


def test_dpo_margin_grows_on_a_toy_objective(tmp_path):
    cfg = dpo.DPOConfig(steps=12, prefixes_per_step=2, rollouts=4, suffix_tokens=16, lr=1e-3, judge="keyword",
                        eval_every=0)
    out = dpo.train(setup(tmp_path, "d", save_every=0), cfg, LETTER_E)
    m = json.loads((out.root / "metrics.json").read_text())
    margins = [s["dpo_margin"] for s in m["steps"] if s.get("dpo_margin") is not None]
    assert margins[0] == pytest.approx(0.0, abs=1e-4)  # policy == reference at the first step
    assert sum(margins[-3:]) / 3 > 1.0
    for key in ("rollout_chosen_rate", "dpo_margin", "chosen_logratio", "rejected_logratio", "invalid_rate"):
        assert key in m["steps"][-1]
    assert [e["step"] for e in m["evals"]] == [0, 12] and all(e["raw_suffix_nll"] > 0 for e in m["evals"])


def test_dpo_refuses_a_judge_that_cannot_compare(tmp_path):
    import click

    with pytest.raises(click.ClickException, match="cannot compare.*keyword"):
        dpo.train(setup(tmp_path, "d"), dpo.DPOConfig(judge="lexical"), {})


# -- resume and outputs --------------------------------------------------------------------
def test_killed_rlmt_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = rlmt.RLMTConfig(steps=4, samples=4, thought_tokens=6, suffix_tokens=10, lr=1e-3, judge="keyword")
    whole = rlmt.train(setup(tmp_path, "whole", save_every=2), cfg, LETTER_E)

    from plugins.judges.keyword import KeywordJudge

    calls = {"n": 0}
    real = KeywordJudge.judge

    def dies_at_step_3(self, pairs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, pairs)

    monkeypatch.setattr(KeywordJudge, "judge", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut", save_every=2), cfg, LETTER_E)
    assert (tmp_path / "cut" / ".train_state" / "state.pt").exists()
    assert json.loads((tmp_path / "cut" / ".train_state" / "metrics.json").read_text())["complete"] is False
    assert not (tmp_path / "cut" / "metrics.json").exists()  # the top level holds only finished files
    monkeypatch.setattr(KeywordJudge, "judge", real)
    cut = rlmt.train(setup(tmp_path, "cut", save_every=2), cfg, LETTER_E)
    a = json.loads((whole.root / "metrics.json").read_text())
    b = json.loads((cut.root / "metrics.json").read_text())
    assert [s["reward_mean"] for s in a["steps"]] == [s["reward_mean"] for s in b["steps"]]
    from safetensors.torch import load_file

    wa, wb = load_file(whole.root / "model.safetensors"), load_file(cut.root / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (cut.root / ".train_state").exists()


def test_finished_output_is_not_overwritten(tmp_path):
    import click

    cfg = rlmt.RLMTConfig(steps=1, samples=2, thought_tokens=4, suffix_tokens=4, judge="keyword")
    rlmt.train(setup(tmp_path, "r"), cfg, LETTER_E)
    rlmt.train(setup(tmp_path, "r"), cfg, LETTER_E)  # same config: already done, returns at once
    with pytest.raises(click.ClickException, match="another config"):
        rlmt.train(setup(tmp_path, "r"), rlmt.RLMTConfig(steps=2, judge="keyword"), LETTER_E)


def test_sft_thought_nll_falls(tmp_path):
    from helpers import write_interleaved
    from training import sft

    data = write_interleaved(tmp_path / "inter.jsonl", n=16)
    cfg = sft.SFTConfig(steps=25, batch_rows=4, lr=3e-3, warmup_steps=0, val_fraction=0.125, eval_every=0,
                        rep_samples=2, rep_tokens=16)
    out = sft.train(setup(tmp_path, "s", data=str(data), save_every=0), cfg)
    m = json.loads((out.root / "metrics.json").read_text())
    first, last = m["evals"][0], m["evals"][-1]
    assert m["rows"] == {"train": 14, "validation": 2}
    for key in ("val_nll_raw", "thought_nll", "text_nll", "post_thought_nll", "repetition_4gram_rate",
                "tokens_seen", "throughput_tok_s", "peak_memory_gib"):
        assert key in last, key
    assert last["thought_nll"] < first["thought_nll"] - 1.0
    assert last["val_nll_raw"] < first["val_nll_raw"]
    assert last["tokens_seen"] == sum(s["tokens"] for s in m["steps"])


def test_sft_token_kinds(tmp_path):
    """Thought tokens (tags included) and the post-thought window are labelled exactly."""
    from training import sft
    from training.policy import Policy

    policy = Policy(setup(tmp_path, "k"))
    row = sft.tokenize_row("x", "Ab. <think>hi</think> Cdefg.", policy, sft.SFTConfig(post_thought_tokens=3))
    text = policy.tokenizer.decode(row.ids)
    assert text == "Ab. <think>hi</think> Cdefg."
    kinds = "".join("T" if k == sft.THOUGHT else "." for k in row.kinds)
    assert kinds == "...." + "T" * len("<think>hi</think>") + "......."
    assert [i for i, p in enumerate(row.post) if p] == [4 + 17, 4 + 17 + 1, 4 + 17 + 2]
    assert policy.tokenizer.decode(row.raw_ids) == "Ab. Cdefg."


def test_sft_refuses_an_arm_without_thought_tags_and_malformed_rows(tmp_path):
    """SFT reads rows with the shared parser: an empty thought stops it naming file and line, like
    ``harness data validate``; an arm without tags is a bad --arm, not a traceback."""
    from types import SimpleNamespace

    import click

    from training import sft

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "A b. <think>fine</think> C d."}) + "\n"
                    + json.dumps({"text": "A b. <think></think> C d."}) + "\n")
    policy = SimpleNamespace(arm=SimpleNamespace(name="x", think_open="<think>", think_close="</think>"))
    with pytest.raises(click.ClickException, match=rf"1 malformed .*\n  {data}:2: empty thought: the <think> at char 5"):
        sft.load_rows(setup(tmp_path, "s", data=str(data)), sft.SFTConfig(), policy)
    policy.arm.think_open = ""
    with pytest.raises(click.ClickException, match="--arm: arm 'x' has no think_open/think_close tags"):
        sft.load_rows(setup(tmp_path, "s", data=str(data)), sft.SFTConfig(), policy)


def test_cli_chain_base_dpo_sft_rlmt_then_probe(tmp_path):
    """Base -> DPO -> SFT -> RLMT through `harness train`; each output loads as an arm, and the
    thought probe runs on the last one."""
    from click.testing import CliRunner

    from harness.cli import cli

    run = CliRunner().invoke
    common = ["--device", "cpu", "--log-every", "0"]
    judge = ["--judge", "keyword", "--judge-option", "words=e", "--judge-option", "match=substring"]
    dpo_dir, sft_dir, rlmt_dir = (str(tmp_path / n) for n in ("dpo", "dpo-sft", "dpo-sft-rlmt"))
    r = run(cli, ["train", "dpo", "--arm", TINY, "--out", dpo_dir, "--steps", "2", "--rollouts", "3",
                  "--suffix-tokens", "12", "--prefix-tokens", "64", *judge, *common])
    assert r.exit_code == 0, r.output
    r = run(cli, ["train", "sft", "--arm", dpo_dir, "--out", sft_dir, "--steps", "2", "--batch-rows", "2",
                  "--max-tokens", "256", "--rep-samples", "1", "--rep-tokens", "8", *common])
    assert r.exit_code == 0, r.output
    r = run(cli, ["train", "rlmt", "--arm", sft_dir, "--out", rlmt_dir, "--steps", "2", "--samples", "3",
                  "--thought-tokens", "6", "--suffix-tokens", "12", "--prefix-tokens", "64", *judge, *common])
    assert r.exit_code == 0, r.output
    assert f"lineage: {TINY} -> dpo -> sft -> rlmt" in r.output
    lineage = json.loads((tmp_path / "dpo-sft-rlmt" / "lineage.json").read_text())
    assert lineage["stage"] == "rlmt" and lineage["parent"]["model"] == sft_dir
    assert lineage["parent"]["lineage"]["parent"]["lineage"]["stage"] == "dpo"
    assert len(lineage["data"]["sha256"]) == 64 and lineage["config"]["kl_coef"] == 0.02
    for d, keys in ((dpo_dir, ["rollout_chosen_rate", "dpo_margin", "chosen_logratio", "rejected_logratio",
                               "invalid_rate"]),
                    (sft_dir, []), (rlmt_dir, ["reward_mean", "mixed_groups", "artifact_rate"])):
        m = json.loads((tmp_path / d / "metrics.json").read_text())
        assert m["complete"] is True and m["summary"]["steps"] == 2
        for k in keys:
            assert k in m["steps"][-1]
    sft_eval = json.loads((tmp_path / "dpo-sft" / "metrics.json").read_text())["evals"][-1]
    assert {"val_nll_raw", "thought_nll", "text_nll", "post_thought_nll"} <= set(sft_eval)
    out = tmp_path / "probe"
    r = run(cli, ["run", "--plugin", "thought_probe", "--arm", dpo_dir, "--arm", rlmt_dir, "--judge", "lexical",
                  "--limit", "2", "--samples", "2", "--suffix-max-tokens", "8", "--thought-max-tokens", "4",
                  "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {rec["arm"] for rec in records} == {dpo_dir, rlmt_dir} and len(records) == 2 * 4 * 2 * 2


def test_llm_judge_compare_counts_invalid_answers(tmp_path):
    from harness.types import Comparison
    from plugins.judges.llm import LLMJudge, parse_choice

    assert parse_choice("A") == 1.0 and parse_choice(" b.\nbecause") == 0.0
    assert parse_choice("A or B") is None and parse_choice("") is None
    judge = LLMJudge({"arm": TINY, "max_tokens": "3"})
    verdicts = judge.compare([Comparison("p", "one", "two"), Comparison("p", "two", "one")])
    assert len(verdicts) == 2
    for v in verdicts:  # a random-init model's answer is gibberish: invalid, never a vote
        assert (v.invalid and v.score is None) or v.score in (0.0, 1.0)


def test_killed_sft_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from helpers import write_interleaved
    from safetensors.torch import load_file

    from training import sft
    from training.output import Output

    data = str(write_interleaved(tmp_path / "inter.jsonl", n=10))
    cfg = sft.SFTConfig(steps=4, batch_rows=3, lr=1e-3, warmup_steps=3, eval_every=0, rep_samples=0)
    whole = sft.train(setup(tmp_path, "whole", data=data, save_every=2), cfg)
    real = Output.save_state

    def save_then_die(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(Output, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        sft.train(setup(tmp_path, "cut", data=data, save_every=2), cfg)
    monkeypatch.setattr(Output, "save_state", real)
    cut = sft.train(setup(tmp_path, "cut", data=data, save_every=2), cfg)
    a = json.loads((whole.root / "metrics.json").read_text())
    b = json.loads((cut.root / "metrics.json").read_text())
    assert [s["loss"] for s in a["steps"]] == pytest.approx([s["loss"] for s in b["steps"]])
    assert [s["lr"] for s in a["steps"]] == [s["lr"] for s in b["steps"]]
    assert a["summary"]["tokens_seen"] == b["summary"]["tokens_seen"]
    wa, wb = load_file(whole.root / "model.safetensors"), load_file(cut.root / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
