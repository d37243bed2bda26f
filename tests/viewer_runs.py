"""Small run directories written by hand (manifest, items, records) for the viewer and pandas tests:
no model runs, so they are instant, and their numbers are chosen to check the page against."""

import json

CONDITIONS = ["normal", "blank", "swapped"]
NASTY = "</script><b>x</b><!-- & \u2028 <script>window.pwned=1</script>"


def write_run(root, record_type, eval_name, arms, item_rows, records, samples=2, interventions=(), judge=None,
              **settings):
    root.mkdir(parents=True)
    config = {"eval": eval_name, "arms": [{"name": a, "model": f"random:{a}", "backend": "hf"} for a in arms],
              "interventions": list(interventions), "tasks": [{"name": "chunks"}], "judge": judge,
              "samples": samples, "seed": 7, "temperature": 1.0, "top_p": 0.95, **settings}
    manifest = {"record_type": record_type, "config": config, "item_ids": [i["id"] for i in item_rows],
                "created": "2026-01-02T03:04:05+0000", "git_sha": "abc", "config_hash": "h" + eval_name,
                "invocations": [{"wall_s": 2.5, "generated_tokens": 40}, {"wall_s": 1.0, "generated_tokens": 2}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in item_rows))
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def probe_items(n):
    return [{"id": f"item-{i}", "prefix": f"Prefix number {i} about rivers and sand. " * 3,
             "suffix": f"true suffix {i}", "cluster": f"s{i % 2}", "meta": {}} for i in range(n)]


def probe_records(arm, n, lp=lambda i, cond, s: -1.0 - 0.1 * i, samples=2):
    """Records for every item x condition x sample; ``lp`` gives suffix_logprob."""
    out = []
    for i in range(n):
        for cond in CONDITIONS:
            for s in range(samples):
                invalid = i == 1 and cond == "blank" and s == 0
                out.append({"eval": "thought_probe", "arm": arm, "condition": cond, "item_id": f"item-{i}", "sample": s,
                            "cluster": f"s{i % 2}", "thought": f"thought {arm} {cond} {i}.{s}", "thought_tokens": 4,
                            "thought_closed": False, "thought_source": f"item-{(i + 1) % n}" if cond == "swapped" else None,
                            "suffix": NASTY if (i, cond, s) == (2, "normal", 0) else f"predicted {cond} {i}.{s}",
                            "suffix_tokens": 6, "finish_reason": "stop" if s else "length",
                            "reward": None if invalid else int((i + s) % 3 == 0), "judge_score": 0.1 * s + 0.01 * i,
                            "judge_invalid": invalid, "judge_raw": None, "suffix_logprob": lp(i, cond, s),
                            "true_suffix_tokens": 9, "seed": 1000 + s, "cached_tokens": None})
    return out


def sensitive_lp(i, cond, s):
    """A log-likelihood whose normal - swapped delta differs per item, in a known order."""
    bumps = [0.3, -0.2, 0.9, 0.0, 0.5, -0.7]
    base = -2.0 - 0.01 * i + 0.001 * s
    return base + bumps[i % len(bumps)] if cond == "normal" else base + (0.05 if cond == "blank" else 0.0)


def other_lp(i, cond, s):
    """Another arm's: the items' deltas in another order."""
    return sensitive_lp(i, cond, s) * (1 + 0.5 * (i % 3)) + (0.4 * i if cond == "blank" else 0.0)


def probe_run(root, arm="arm-a", n=6, lp=sensitive_lp, **kw):
    return write_run(root, "probe", "thought_probe", [arm], probe_items(n), probe_records(arm, n, lp, **kw),
                     interventions=CONDITIONS, judge={"name": "embedding", "threshold": 0.6},
                     thought_max_tokens=4, suffix_max_tokens=6)


def reasoning_run(root, arms=("arm-a", "arm-b"), n=3, k=2):
    items = [{"id": f"gsm8k/test-{i:04d}", "prefix": f"What is {i} + {i}?", "suffix": str(2 * i), "cluster": None,
              "meta": {"answer": str(2 * i), "benchmark": "gsm8k", "solution": f"{i} + {i} = {2 * i}"}} for i in range(n)]
    recs = []
    for a, arm in enumerate(arms):
        for i in range(n):
            for s in range(k):
                ok = (i + s + a) % 2 == 0
                recs.append({"eval": "reasoning", "arm": arm, "condition": "gsm8k", "benchmark": "gsm8k",
                             "item_id": items[i]["id"], "problem_id": items[i]["id"], "sample": s, "cluster": None,
                             "grader": "math", "answer": str(2 * i), "prompt_style": "plain", "prompt_tokens": 20,
                             "completion": f"The sum is \\boxed{{{2 * i if ok else 99}}}", "completion_tokens": 8 + s,
                             "finish_reason": "stop", "seed": s, "cached_tokens": None,
                             "extracted": str(2 * i if ok else 99), "extract_how": "boxed", "correct": ok,
                             "grade_reason": "match" if ok else "mismatch", "answer_key": None})
    return write_run(root, "reasoning", "reasoning", list(arms), items, recs, samples=k, max_new_tokens=16,
                     temperature=0.6)


def other_run(root, record_type="mystery"):
    items = probe_items(2)
    recs = [{"arm": "arm-a", "condition": "x", "item_id": "item-0", "sample": 0, "nested": {"a": [1, 2, {"b": None}]},
             "text": "long " * 100, "score": 1.5},
            {"arm": "arm-a", "condition": "x", "item_id": "item-1", "sample": 0, "nested": None, "text": NASTY,
             "score": None}]
    return write_run(root, record_type, record_type, ["arm-a"], items, recs, samples=1, interventions=["x"])
