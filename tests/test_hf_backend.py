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
