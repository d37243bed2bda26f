"""Judge verdicts cached by content, so judging the same texts with the same judge twice costs nothing.

A verdict's key is a hash of the judge (its resolved config, with ``name``, and its plugin's
provenance: distribution, version and, for third-party plugins, a hash of its code) and of the
texts it judged: for ``judge()`` the predicted text, the reference and the prefix; for
``compare()`` the prefix, the text shown first, the text shown second and the reference (the
order is part of the key: a judge may prefer a position). The same texts under another judge
config, or after the judge's plugin changed, are a different key.

- Where: ``$HARNESS_VERDICT_CACHE`` (a directory), else ``$HARNESS_CACHE/verdicts``, i.e.
  ``~/.cache/harness/verdicts``; one SQLite file, ``verdicts.sqlite``, shared by every run (each
  write is a transaction, so concurrent processes and a kill leave it consistent).
- What: ``reward``, ``score``, ``invalid`` and ``raw`` of each verdict the judge returned and that
  passed the contract's checks. An invalid verdict (the judge's answer could not be parsed) is
  cached as invalid: asking again would ask the same judge the same thing. A call that raised is
  not cached, so a failed call is tried again next time.
- Where it is used: ``harness rejudge`` (``--no-cache`` to bypass it). ``harness run`` does not
  use it: a run's judge may read an arm whose weights change in place (the ``llm`` judge), which
  the key does not see.

:class:`CachedJudge` wraps a judge with the same ``judge()`` / ``compare()`` interface, so an
eval's code cannot tell it from the judge; ``calls`` and ``hits`` count what was sent to the judge
and what came from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.checks import check_comparisons, check_verdicts
from harness.types import Verdict

FILE = "verdicts.sqlite"


def cache_dir() -> Path:
    """``$HARNESS_VERDICT_CACHE``, else ``$HARNESS_CACHE/verdicts`` (default ``~/.cache/harness/verdicts``)."""
    if os.environ.get("HARNESS_VERDICT_CACHE"):
        return Path(os.environ["HARNESS_VERDICT_CACHE"])
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "verdicts"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _dump(v: Verdict) -> str:
    score = None if v.score is None else float(v.score)
    reward = None if v.reward is None else int(v.reward)
    return json.dumps({"reward": reward, "score": score, "invalid": bool(v.invalid), "raw": v.raw})


def _load(text: str) -> Verdict:
    d = json.loads(text)
    return Verdict(reward=d["reward"], score=d["score"], invalid=d["invalid"], raw=d["raw"])


class VerdictStore:
    """The on-disk table key -> verdict (``directory``: default :func:`cache_dir`)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.path = Path(directory or cache_dir()) / FILE
        self._db = None
        self.broken: str | None = None  # why the cache could not be used (then it is skipped, with a warning)

    def _failed(self, exc: Exception) -> None:
        if self.broken is None:
            import click

            self.broken = f"{type(exc).__name__}: {exc}"
            click.echo(f"warning: verdict cache {self.path} unusable ({self.broken}); judging without it", err=True)

    def _conn(self):
        if self._db is None:
            import sqlite3

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
            self._db.commit()
        return self._db

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        """The cached verdicts of ``keys`` (those it has); {} when the cache cannot be read."""
        import sqlite3

        if self.broken:
            return {}
        out = {}
        unique = list(dict.fromkeys(keys))
        try:
            db = self._conn()
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                rows = db.execute(f"SELECT key, verdict FROM verdicts WHERE key IN ({','.join('?' * len(part))})",
                                  part)
                out.update({k: _load(v) for k, v in rows})
        except (OSError, sqlite3.Error, ValueError, KeyError) as exc:
            self._failed(exc)
            return {}
        return out

    def put_many(self, entries: dict[str, Verdict]) -> None:
        import sqlite3

        if not entries or self.broken:
            return
        try:
            db = self._conn()
            with db:  # one transaction
                db.executemany("INSERT OR REPLACE INTO verdicts (key, verdict) VALUES (?, ?)",
                               [(k, _dump(v)) for k, v in entries.items()])
        except (OSError, sqlite3.Error) as exc:
            self._failed(exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class CachedJudge:
    """``judge`` behind the verdict cache: ``judge(pairs)`` and (when the judge has it)
    ``compare(comparisons)`` answer from the cache where they can and send only the rest to the
    judge, in one call. ``judge_config``: the judge's config as the run records it (with ``name``);
    ``provenance``: its plugin's provenance; ``store``: a :class:`VerdictStore`, or None for no cache."""

    def __init__(self, judge, judge_config: dict, provenance: dict | None = None, store: VerdictStore | None = None):
        self.inner, self.store = judge, store
        self.name = judge_config.get("name", getattr(judge, "name", "?"))
        self.judge_config = judge_config
        self._salt = {"judge": judge_config, "plugin": provenance or {}}
        self.calls = 0  # judge() / compare() calls that reached the judge
        self.judged = 0  # pairs and comparisons sent to the judge
        self.hits = 0  # answered from the cache
        if callable(getattr(judge, "compare", None)):
            self.compare = self._compare

    def config(self) -> dict:
        return self.inner.config()

    def key(self, what: str, texts: list[str]) -> str:
        return _hash({"what": what, "texts": texts, **self._salt})

    def judge(self, pairs):
        keys = [self.key("judge", [p.predicted, p.reference, p.prefix]) for p in pairs]
        return self._through(keys, pairs, lambda todo: self.inner.judge(todo),
                             lambda verdicts, n: check_verdicts(self.name, verdicts, n))

    def _compare(self, comparisons):
        keys = [self.key("compare", [c.prefix, c.first, c.second, c.reference]) for c in comparisons]
        return self._through(keys, comparisons, lambda todo: self.inner.compare(todo),
                             lambda verdicts, n: check_comparisons(self.name, verdicts, n))

    def _through(self, keys, inputs, call, check) -> list[Verdict]:
        found = self.store.get_many(keys) if self.store is not None else {}
        todo = {}  # key -> first input with it (a text judged twice in one call is asked once)
        for k, x in zip(keys, inputs):
            if k not in found:
                todo.setdefault(k, x)
        if todo:
            self.calls += 1
            verdicts = call(list(todo.values()))  # an exception propagates: nothing is cached
            check(verdicts, len(todo))
            self.judged += len(todo)
            new = dict(zip(todo, verdicts))
            if self.store is not None:
                self.store.put_many(new)
            found = {**found, **new}
        self.hits += sum(k not in todo for k in keys)
        return [found[k] for k in keys]
