"""Bad user input is one clear line naming the culprit (file:line, flag or option), raised before
any work: the run directory (``--out``) is never created."""

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks

RUN = ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--intervention", "normal", "--limit", "2",
       "--samples", "1", "--quiet"]


def _fails(tmp_path, args, *needles, code=2):
    """Run ``harness run ARGS --out OUT``: exit ``code``, one output line holding every needle, no OUT."""
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert res.exit_code == code, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def test_non_utf8_data_names_file_and_line(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=3)
    with open(data, "ab") as fh:
        fh.write(b'{"id": "x", "text": "caf\xe9 au lait"}\n')
    _fails(tmp_path, [*RUN, "--data-file", str(data)], f"{data}:4", "UTF-8", code=1)


def test_json_line_that_is_not_an_object(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=3)
    with open(data, "a") as fh:
        fh.write("[1, 2]\n")
    _fails(tmp_path, [*RUN, "--data-file", str(data)], f"{data}:4", "JSON object", code=1)


def test_prefix_without_suffix_says_suffix_is_missing(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "prefix": "p q", "suffix": "s t"}\n{"id": "b", "prefix": "only a prefix"}\n')
    line = _fails(tmp_path, [*RUN, "--data-file", str(data)], f"{data}:2", "'suffix'", code=1)
    assert "'text'" not in line.split("(")[0]


@pytest.mark.parametrize("judge,options,needles", [
    ("lexical", ["threshold=abc"], ["lexical judge", "threshold='abc'"]),
    ("lexical", ["threshold=nan"], ["lexical judge", "threshold='nan'"]),
    ("lexical", ["threshold=inf"], ["lexical judge", "threshold='inf'"]),
    ("lexical", ["threshold=1.5"], ["lexical judge", "threshold='1.5'", "[0, 1]"]),
    ("embedding", ["threshold=abc"], ["embedding judge", "threshold='abc'"]),
    ("embedding", ["threshold=-inf"], ["embedding judge", "threshold='-inf'"]),
    ("embedding", ["threshold=2"], ["embedding judge", "[-1, 1]"]),
    ("embedding", ["batch_size=0"], ["embedding judge", "batch_size='0'", ">= 1"]),
    ("keyword", ["words=sand", "min_count=abc"], ["keyword judge", "min_count='abc'"]),
    ("keyword", ["words=sand", "min_count=0"], ["keyword judge", "min_count='0'", ">= 1"]),
    ("llm", ["arm=tiny-qwen3", "max_tokens=abc"], ["llm judge", "max_tokens='abc'"]),
    ("llm", ["arm=tiny-qwen3", "max_tokens=0"], ["llm judge", "max_tokens='0'", ">= 1"]),
    ("llm", ["arm=tiny-qwen3", "chat=maybe"], ["llm judge", "chat='maybe'"]),
    ("llm", ["arm=./no/such/judge"], ["judge arm './no/such/judge'", "not found"]),
])
def test_bad_judge_option_values(tmp_path, judge, options, needles):
    args = ["run", "--arm", "tiny-qwen3", "--judge", judge, "--limit", "2", "--samples", "1", "--quiet"]
    for o in options:
        args += ["--judge-option", o]
    _fails(tmp_path, args, "--judge-option", *needles)


@pytest.mark.parametrize("content,needle", [
    (None, "not found"),
    ('{"verdict": "YES"}\n{reference}\n{predicted}\n', 'unknown placeholder {"verdict"}'),
    ("{reference} { {predicted}\n", "unexpected '{'"),
    ("{reference} {0} {predicted}\n", "unknown placeholder {0}"),
    ("{reference} {predicted} }\n", "Single '}'"),
])
@pytest.mark.parametrize("option", ["template", "pair_template"])
def test_bad_llm_judge_template(tmp_path, content, needle, option):
    path = tmp_path / "tpl.txt"
    if content is not None:
        path.write_text(content.replace("{reference}", "{first}").replace("{predicted}", "{second}")
                        if option == "pair_template" else content)
    _fails(tmp_path, ["run", "--arm", "tiny-qwen3", "--judge", "llm", "--judge-option", "arm=tiny-qwen3",
                      "--judge-option", f"{option}={path}", "--limit", "2", "--quiet"],
           "--judge-option", f"llm judge {option}", str(path), needle)


def test_llm_judge_template_with_escaped_braces_is_accepted(tmp_path):
    from harness.arms import load_arms
    from harness.types import JudgePair
    from plugins.judges.llm import LLMJudge

    path = tmp_path / "tpl.txt"
    path.write_text('Reply as {{"verdict": ...}}\n{prefix_block}{reference}\n{predicted}\n')
    judge = LLMJudge({"arm": "tiny-qwen3", "template": str(path)}, load_arms())
    assert judge.prompt(JudgePair("p", "r")).startswith('Reply as {"verdict": ...}\n')


@pytest.mark.parametrize("option,needle", [
    ("prefix_words=abc", "prefix_words='abc'"),
    ("suffix_words=0", "suffix_words='0'"),
    ("prefix_words=-3", "prefix_words='-3'"),
    ("suffix_words=1.5", "suffix_words='1.5'"),
])
def test_bad_chunks_task_options_blame_the_option(tmp_path, option, needle):
    _fails(tmp_path, [*RUN, "--task-option", option], "--task-option", needle)


@pytest.mark.parametrize("option,needle", [
    ("grade_workers=abc", "grade_workers='abc'"),
    ("grade_workers=0", "grade_workers='0'"),
    ("grade_timeout=-1", "grade_timeout='-1'"),
    ("grade_timeout=nan", "grade_timeout='nan'"),
    ("grade_timeout=abc", "grade_timeout='abc'"),
    ("prompt=fancy", "prompt='fancy'"),
])
def test_bad_reasoning_options(tmp_path, option, needle):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--plugin", "reasoning", "--arm", "tiny-qwen3", "--task", "gsm8k",
                                   "--task-option", "data=sample", "--limit", "1", "--samples", "1",
                                   "--max-new-tokens", "2", "--quiet", "--option", option, "--out", str(out)])
    assert res.exit_code == 2, res.output
    last = [line for line in res.output.splitlines() if line.strip()][-1]
    assert "--option" in last and needle in last
    assert not out.exists()


def test_reasoning_check_options_is_a_classmethod():
    from harness.errors import BadInput
    from plugins.evals.reasoning import Reasoning

    Reasoning.check_options({})
    Reasoning.check_options({"grade_workers": "2", "grade_timeout": "0.5", "prompt": "chat"})
    with pytest.raises(BadInput, match="grade_timeout='inf'"):
        Reasoning.check_options({"grade_timeout": "inf"})


@pytest.mark.parametrize("toml,needles", [
    ("arms = 3\n", ["'arms' must be a table", "got int"]),
    ("arms = [1]\n", ["'arms' must be a table", "got list"]),
    ("[arms]\nx = 3\n", ["arm 'x' must be a table"]),
    ('[arms.x]\nmodel = 5\n', ["arm 'x'", "model must be a string", "got 5"]),
    ('[arms.x]\nmodel = "random:tiny-qwen3"\noptions = "x"\n', ["arm 'x'", "options must be a table"]),
    ('[arms.x]\nmodel = "random:tiny-qwen3"\ntrust_remote_code = "yes"\n', ["arm 'x'", "trust_remote_code must be true or false"]),
    ('[arms.x]\nmodel = "random:tiny-qwen3"\nthink_open = 1\n', ["arm 'x'", "think_open must be a string"]),
    ('[arms.x]\nmodel = "random:tiny-qwen3"\nname = "y"\n', ["arm 'x'", "unknown keys ['name']"]),
    ('[arms.x]\nmodel = ""\n', ["arm 'x'", "model is empty"]),
])
def test_wrongly_typed_arms_file_names_file_and_arm(tmp_path, toml, needles):
    arms = tmp_path / "arms.toml"
    arms.write_text(toml)
    _fails(tmp_path, [*RUN[:1], "--arms-file", str(arms), *RUN[1:]], "--arms-file", str(arms), *needles)


def test_non_utf8_arms_file(tmp_path):
    arms = tmp_path / "arms.toml"
    arms.write_bytes(b'[arms.x]\nmodel = "caf\xe9"\n')
    _fails(tmp_path, [*RUN[:1], "--arms-file", str(arms), *RUN[1:]], "--arms-file", str(arms), "UTF-8")


@pytest.mark.parametrize("setting,needle", [
    ('dtype = "float99"', "dtype 'float99' is not one of auto, float32, float16, bfloat16"),
    ('device = "tpu9"', "device 'tpu9' is not one of auto, cpu, cuda, cuda:N, mps"),
    ('device = "cuda:x"', "device 'cuda:x'"),
])
def test_bad_dtype_or_device_is_refused_before_any_work(tmp_path, setting, needle):
    arms = tmp_path / "arms.toml"
    arms.write_text(f'[arms.x]\nmodel = "random:tiny-qwen3"\n{setting}\n')
    _fails(tmp_path, ["run", "--arms-file", str(arms), "--arm", "x", "--judge", "lexical", "--limit", "2", "--quiet"],
           "arm 'x'", needle)


def test_good_dtype_and_device_pass_resolution():
    from harness.modelspec import resolve_path
    from harness.types import Arm

    for dtype, device in (("auto", "auto"), ("bfloat16", "cuda:1"), ("float16", "mps"), ("float32", "cpu")):
        assert resolve_path(Arm("x", "random:tiny-qwen3", dtype=dtype, device=device)) == ("random", "tiny-qwen3")
    # a server backend passes its own dtype names to its server: not checked here
    assert resolve_path(Arm("x", "random:tiny-qwen3", backend="sglang", dtype="half"))[0] == "random"


def test_corrupt_gguf_is_refused_before_any_work(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"\x00\x01 not a gguf file at all")
    _fails(tmp_path, ["run", "--arm", str(model), "--judge", "lexical", "--limit", "2", "--quiet"],
           str(model), "not a GGUF file", code=1)


def test_prompt_past_the_context_warns_once(capsys):
    from harness.types import Arm, GenRequest
    from plugins.backends.hf import HFBackend

    backend = HFBackend(Arm(name="tiny", model="random:tiny-qwen3", device="cpu", options={"seed": 0}))
    backend.model.config.max_position_embeddings = 8
    ids = backend.encode("hello")
    backend.generate([GenRequest(ids, n=1, seeds=[0], max_new_tokens=3, temperature=0.0)])  # 5 + 3 fits
    assert "context" not in capsys.readouterr().err
    for _ in range(2):
        backend.generate([GenRequest(ids, n=1, seeds=[0], max_new_tokens=4, temperature=0.0)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "'tiny'" in err[0] and "5 tokens" in err[0] and "4 new tokens" in err[0] \
        and "context of 8" in err[0]
