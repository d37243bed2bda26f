"""kill -9 at every write point of ``harness run``, then a plain rerun: the records equal an
uninterrupted run's (suffix log-likelihoods to 1e-6: a chunk cut by the kill is regenerated in a
smaller batch, which moves float sums in the last bits)."""

import json
import math
import signal
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks

pytest.importorskip("torch")

# Runs the CLI with RunStore's writers patched to SIGKILL the process at the Nth write of one file:
# "before" it (nothing of it on disk), "after" it, or "torn" (half its bytes written, then killed).
KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from harness import store as S

    target, nth, mode = sys.argv[1].split(":")
    seen = {"n": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def hit(name):
        if name != target:
            return False
        seen["n"] += 1
        return seen["n"] == int(nth)

    write_text, append = S.RunStore.write_text, S.RunStore.append

    def patched_write_text(self, name, text):
        if hit(name):
            if mode == "torn":
                (self.root / f".{name}.tmp{os.getpid()}").write_text(text[: len(text) // 2])
            if mode != "after":
                die()
            write_text(self, name, text)
            die()
        write_text(self, name, text)

    def patched_append(self, rows, name=S.SAMPLES):
        if rows and hit(name):
            if mode == "torn":
                data = "".join(json.dumps(r) + "\\n" for r in rows)
                with open(self.root / name, "a") as fh:
                    fh.write(data[: len(data) // 2])
            if mode != "after":
                die()
            append(self, rows, name)
            die()
        append(self, rows, name)

    S.RunStore.write_text, S.RunStore.append = patched_write_text, patched_append
    from harness.cli import main
    sys.argv = ["harness", *sys.argv[2:]]
    main()
""")

POINTS = ["items.jsonl:1:before", "items.jsonl:1:torn", "items.jsonl:1:after",
          "manifest.json:1:before", "manifest.json:1:after",
          "thoughts.jsonl:1:torn", "thoughts.jsonl:1:after",
          "samples.jsonl:1:torn", "samples.jsonl:1:after", "samples.jsonl:2:torn",
          "manifest.json:2:before", "summary.json:1:before", "report.md:1:before"]


def _args(data, out):
    return ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet", "--samples", "2", "--limit", "3",
            "--thought-max-tokens", "6", "--suffix-max-tokens", "6", "--intervention", "normal",
            "--intervention", "blank", "--intervention", "swapped", "--data-file", str(data), "--out", str(out)]


def _keyed(path):
    rows = [json.loads(line) for line in open(path)]
    return {(r["arm"], r["condition"], r["item_id"], r["sample"]): r for r in rows}, len(rows)


def _same(a, b):
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=0, abs_tol=1e-6):
                return False
        elif x != y:
            return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    data = write_chunks(root / "d.jsonl", n=4)
    res = CliRunner().invoke(cli, _args(data, root / "run"))
    assert res.exit_code == 0, res.output
    return data, root / "run"


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_write_point_then_resume_equals_uninterrupted(tmp_path, reference, point):
    data, ref = reference
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLER, point, *_args(data, out)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    res = CliRunner().invoke(cli, _args(data, out))
    assert res.exit_code == 0, res.output
    for name in ("samples.jsonl", "thoughts.jsonl"):
        want, _ = _keyed(ref / name)
        got, lines = _keyed(out / name)
        assert lines == len(got) == len(want), f"{name}: {lines} lines for {len(got)} keys, want {len(want)}"
        bad = [k for k in want if not _same(want[k], got[k])]
        assert not bad, f"{name}: {len(bad)} records differ, e.g. {bad[0]}"
    assert (out / "items.jsonl").read_text() == (ref / "items.jsonl").read_text()
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert summary["n_records"] == ref_summary["n_records"]
    assert (out / "report.md").exists() and not list(out.glob(".*.tmp*"))
