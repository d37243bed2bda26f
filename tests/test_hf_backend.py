import pytest

torch = pytest.importorskip("torch")

from harness.types import Arm, GenRequest, ScoreRequest
from plugins.backends.hf import HFBackend


@pytest.fixture(scope="module")
def backend():
    return HFBackend(Arm(name="tiny", model="random:tiny-qwen3", device="cpu", options={"seed": 0}))


def test_seeded_samples_repeat_and_differ(backend):
    p = backend.encode("Sand moves along the beach. <think>")
    req = GenRequest(p, n=3, seeds=[11, 12, 13], max_new_tokens=12)
    a, b = backend.generate([req])[0], backend.generate([req])[0]
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert len({tuple(c.token_ids) for c in a}) == 3
    assert all(len(c.token_ids) <= 12 for c in a)


def test_shared_prefix_expansion_matches_single_requests(backend):
    p = backend.encode("Waves sort grains by size.")
    joint = backend.generate([GenRequest(p, n=2, seeds=[5, 6], max_new_tokens=10)])[0]
    single = [backend.generate([GenRequest(p, n=1, seeds=[s], max_new_tokens=10)])[0][0] for s in (5, 6)]
    assert [c.token_ids for c in joint] == [c.token_ids for c in single]


def test_stop_string_cuts_before_tag(backend):
    # Force the stop: greedy decoding on a random model is arbitrary, so stop on a string it writes.
    p = backend.encode("abc")
    free = backend.generate([GenRequest(p, n=1, seeds=[1], max_new_tokens=20)])[0][0]
    stop = backend.decode(free.token_ids[5:7])
    if not stop.strip() or stop in backend.decode(free.token_ids[:5]):
        pytest.skip("random model produced no usable stop string")
    cut = backend.generate([GenRequest(p, n=1, seeds=[1], max_new_tokens=20, stop_strings=(stop,))])[0][0]
    assert cut.finish_reason == "stop"
    assert cut.token_ids == free.token_ids[:len(cut.token_ids)]
    assert stop not in cut.text


def test_score_matches_manual_forward(backend):
    ctx, cont = backend.encode("The tide"), backend.encode(" rises")
    lp = backend.score([ScoreRequest(ctx, cont), ScoreRequest(backend.encode("x"), backend.encode("yz"))])
    with torch.no_grad():
        logits = backend.model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
    manual = [logits[len(ctx) - 1 + k, t].item() for k, t in enumerate(cont)]
    assert lp[0] == pytest.approx(manual, abs=1e-4)
    assert len(lp[1]) == 2


def _gens(seeds):
    gens = []
    for s in seeds:
        g = torch.Generator()
        g.manual_seed(s)
        gens.append(g)
    return gens


def test_nucleus_fast_path_equals_full_sort():
    from plugins.backends.hf.kernels import sample_rows

    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(0)) * 3
    for top_p in (0.3, 0.9, 0.999):
        fast = sample_rows(logits, 1.0, top_p, _gens(range(6)), top_k_first=8)
        full = sample_rows(logits, 1.0, top_p, _gens(range(6)), top_k_first=500)
        assert fast.tolist() == full.tolist()


def test_nucleus_sampling_matches_the_truncated_distribution():
    from scipy.stats import chisquare

    from plugins.backends.hf.kernels import sample_rows

    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = probs.log()[None, :].repeat(4000, 1)
    draws = sample_rows(logits, 1.0, 0.8, _gens(range(4000)), top_k_first=2)
    counts = torch.bincount(draws, minlength=5).tolist()
    assert counts[3] == counts[4] == 0  # outside the 0.8 nucleus {0.5, 0.2, 0.15}
    expected = [4000 * p / 0.85 for p in (0.5, 0.2, 0.15)]
    assert chisquare(counts[:3], expected).pvalue > 1e-3
    free = sample_rows(logits, 1.0, 1.0, _gens(range(4000)))
    assert chisquare(torch.bincount(free, minlength=5).tolist(), (probs * 4000).tolist()).pvalue > 1e-3
    assert sample_rows(logits[:3], 0.0, 0.5, _gens(range(3))).tolist() == [0, 0, 0]


def test_fused_prefill_scoring_matches_score_and_leaves_sampling_unchanged(backend):
    prompts = [backend.encode("Rivers carry sand.</think>"), backend.encode("Waves.</think>")]
    truths = [backend.encode(" It settles offshore."), backend.encode(" Grains sort by size, slowly")]
    plain = backend.generate([GenRequest(p, n=2, seeds=[3, 4], max_new_tokens=8) for p in prompts])
    fused = backend.generate([GenRequest(p, n=2, seeds=[3, 4], max_new_tokens=8, score_ids=t)
                              for p, t in zip(prompts, truths)])
    separate = backend.score([ScoreRequest(p, t) for p, t in zip(prompts, truths)])
    for out, ref, plain_out in zip(fused, separate, plain):
        assert all(c.score_logprobs == pytest.approx(ref, abs=1e-4) for c in out)
        assert [c.token_ids for c in out] == [c.token_ids for c in plain_out]
    assert all(c.score_logprobs is None for out in plain for c in out)


def test_logit_budget_splits_batches_without_changing_results(backend):
    small = HFBackend(Arm(name="tiny", model="random:tiny-qwen3", device="cpu",
                          options={"seed": 0, "prefill_logit_rows": 8}))
    prompts = [backend.encode(t) for t in ("Sand.</think>", "Rivers carry sand.</think>", "Waves sort it.</think>")]
    truths = [backend.encode(t) for t in (" It settles.", " Grains sort by size", " Slowly")]
    reqs = [GenRequest(p, n=2, seeds=[7, 8], max_new_tokens=6, score_ids=t) for p, t in zip(prompts, truths)]
    whole, split = backend.generate(reqs), small.generate(reqs)
    for a, b in zip(whole, split):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        assert a[0].score_logprobs == pytest.approx(b[0].score_logprobs, abs=1e-4)


def test_tokenizer_base_members(backend):
    """What harness.backend_base.TokenizerBackend gives the hf backend (and openai, sglang)."""
    from harness.backend_base import TokenizerBackend
    from harness.errors import BadInput

    assert isinstance(backend, TokenizerBackend) and backend.tokenizer_spec == "random:tiny-qwen3"
    ids = backend.encode("ab</think>cd</x>")
    assert backend.decode(ids) == "ab</think>cd</x>"
    # ids end before the token where the first stop string begins; none found: all of them
    assert backend.cut_at_stop(ids, ("</x>", "</think>")) == backend.encode("ab")
    assert backend.cut_at_stop(ids, ("nope",)) == ids
    assert backend.first_stop("ab</think>", ("</think>", "b")) == 1 and backend.first_stop("ab", ("c",)) is None
    assert backend.cut_at(ids, 3) == backend.encode("ab<")
    # the tokenizer's EOS and the model's generation_config EOS ids
    from types import SimpleNamespace

    class Model:
        generation_config = SimpleNamespace(eos_token_id=[5, 6])

        def forward(self, input_ids, past_key_values=None):
            raise AssertionError("not run")

    other = HFBackend.from_loaded(backend.arm, Model(), backend.tokenizer, "cpu")
    assert other.eos_ids == {backend.tokenizer.eos_token_id, 5, 6}
    with pytest.raises(BadInput, match="arm 'tiny' has no chat template; use the plain prompt"):
        backend.chat_prompt([{"role": "user", "content": "hi"}])

