"""``dtype = "auto"``: bfloat16 on CUDA and on CPUs with native bfloat16, float32 elsewhere and for
the random-init test presets; ``harness run --dtype`` overrides every arm's dtype."""

import json

import pytest
from click.testing import CliRunner

from harness import modelspec
from harness.modelspec import cpu_bf16_flags, resolve_dtype


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_bf16_flags(str(info)) == ["avx512_bf16", "amx_bf16"]
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_bf16_flags(str(info)) == []
    assert cpu_bf16_flags(str(tmp_path / "missing")) == []


def test_auto_dtype_rule(monkeypatch):
    monkeypatch.setattr(modelspec, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    dtype, rule = resolve_dtype("auto", "cpu", "Qwen/Qwen3-0.6B-Base")
    assert dtype == "bfloat16" and rule == "auto: CPU with avx512_bf16"
    assert resolve_dtype("auto", "cpu", "random:tiny-qwen3")[0] == "float32"
    assert resolve_dtype("auto", "cuda:1", "random:tiny-qwen3")[0] == "bfloat16"
    assert resolve_dtype("float32", "cpu", "x/y") == ("float32", "set by the arm")
    assert resolve_dtype("auto", "mps", "x/y")[0] == "float32"
    monkeypatch.setattr(modelspec, "cpu_bf16_flags", lambda: [])
    assert resolve_dtype("auto", "cpu", "Qwen/Qwen3-0.6B-Base")[0] == "float32"


def test_run_dtype_overrides_every_arm(tmp_path):
    pytest.importorskip("torch")
    from harness.cli import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet", "--limit", "1",
                                   "--samples", "1", "--intervention", "blank", "--suffix-max-tokens", "4",
                                   "--thought-max-tokens", "4", "--dtype", "bfloat16", "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["invocations"][0]["backends"]["tiny-qwen3"]
    assert info["dtype"] == "bfloat16" and info["dtype_rule"] == "set by the arm" and "cpu_bf16_flags" in info
    assert "batch" in info["notes"][0]  # bf16 samples depend on their batch: the backend says so, the report shows it
    assert "Backend note (tiny-qwen3): bfloat16: a sample's tokens can depend" in (out / "report.md").read_text()
    assert [a["dtype"] for a in manifest["config"]["arms"]] == ["bfloat16"]
    bad = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--dtype", "half", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--dtype" in bad.output
