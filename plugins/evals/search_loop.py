"""The multi-turn search rollout of the ``search_r1`` eval, in token ids.

A rollout's context starts as its prompt ids and only ever grows by appending ids: the ids the
model generated (exactly as the backend returned them) and ids the harness inserts (encoded on
their own, and recorded as inserted). Nothing the model wrote is decoded and encoded again.

One turn, for every active rollout at once (one ``generate`` call per turn, identical contexts
sharing one request):

1. generate up to ``max_new_tokens`` until ``</search>``, ``</answer>`` or EOS;
2. a stop string cuts the returned ids before the token where it starts (see
   ``harness.types.GenRequest``), so the close tag of the last open ``<search>`` / ``<answer>`` in
   the turn's text is inserted (``close_ids``; nothing when the text opens neither);
3. the action is the first ``<(search|answer)>(.*?)</\\1>`` of the turn's text (model text + the
   inserted close tag): ``answer`` ends the rollout; ``search`` with a non-empty query goes to the
   retriever (all of the turn's queries in one call, ``topk`` each, checked), its results through
   the evidence condition's ``observe``, and the observation
   ``\\n\\n<information>Doc 1(Title: T) text\\nDoc 2(Title: ...) ...</information>\\n\\n`` is appended
   (at most ``max_obs_tokens`` tokens: the passages are cut, the close tag kept); anything else is
   an invalid action and :data:`CORRECTION` is appended;
4. after ``max_turns`` turns a rollout still going gets one final turn with search disabled:
   :data:`FINAL_INSTRUCTION` is appended first, and whatever that turn does ends the rollout.

EOS ends a turn without being appended (the backends do not return it); a turn cut at the token
cap has no close tag inserted. Each turn's record (``turns``) says what was generated and what was
inserted, so the whole context can be rebuilt: prompt + for every turn ``lead_ids + token_ids +
close_ids + inserted_ids``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.checks import PluginReturnError, checked_docs, label
from harness.seeding import derive_seed
from harness.types import GenRequest, Item

STOPS = ("</search>", "</answer>")
ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
OPEN_TAG = re.compile(r"<(search|answer)>")
CORRECTION = ("\nThat was not a valid action. To look something up, I should write a query between <search> "
              "and </search>; to finish, I should write the final answer between <answer> and </answer>. "
              "Let me try again.\n")
FINAL_INSTRUCTION = ("\nNo more searches are possible now. I will write the final answer between <answer> and "
                     "</answer>.\n")
NO_RESULTS = "No results were found for this query."
OPEN_INFO, CLOSE_INFO = "\n\n<information>", "</information>\n\n"


@dataclass(frozen=True)
class LoopSettings:
    """How rollouts run: per-turn token cap and sampling, passages per search, turns with search
    allowed, and the token cap of one observation."""

    max_new_tokens: int
    temperature: float
    top_p: float
    topk: int = 3
    max_turns: int = 4
    max_obs_tokens: int = 500


@dataclass
class Rollout:
    """One (item, sample) under one condition: its context ids and the turns so far."""

    item: Item
    sample: int
    seed: int  # the rollout's seed; turn t samples with derive_seed(seed, "turn", t)
    context: list[int]
    turns: list[dict] = field(default_factory=list)
    done: bool = False


def turn_seed(seed: int, turn: int) -> int:
    return derive_seed(seed, "turn", turn)


def close_tag(text: str) -> str:
    """The close tag of the last ``<search>`` or ``<answer>`` opened in ``text`` ("" when none):
    what a stop string cut from the end of a turn."""
    opened = OPEN_TAG.findall(text)
    return f"</{opened[-1]}>" if opened else ""


def parse_action(text: str) -> tuple[str, str | None]:
    """``("search", query)``, ``("answer", answer)`` (stripped) or ``("invalid", None)``: the first
    well-formed action in a turn's text; a search with an empty query is invalid."""
    m = ACTION.search(text)
    if m is None or (m.group(1) == "search" and not m.group(2).strip()):
        return "invalid", None
    return m.group(1), m.group(2).strip()


def final_answer(turns: list[dict]) -> str | None:
    """The last ``<answer>...</answer>`` the model wrote (each turn's text with its inserted close
    tag; never the prompt, observations or corrections), stripped; None when there is none."""
    found = [m.strip() for t in turns for m in ANSWER.findall(t["text"] + t["close"])]
    return found[-1] if found else None


def format_docs(docs: list[dict]) -> str:
    """``Doc 1(Title: T) text`` lines (the first line of a passage's contents is its title), or
    :data:`NO_RESULTS` for no passages."""
    if not docs:
        return NO_RESULTS
    lines = []
    for n, d in enumerate(docs, 1):
        title, _, text = d["contents"].partition("\n")
        lines.append(f"Doc {n}(Title: {title}) {text}")
    return "\n".join(lines)


def observation_ids(backend, docs: list[dict], cap: int) -> tuple[list[int], bool]:
    """(ids of the observation, whether it was cut): the whole observation (passages stripped of
    surrounding whitespace) encoded at once when it fits in ``cap`` tokens, else its head cut so
    that the encoded close tag still fits."""
    body = OPEN_INFO + format_docs(docs).strip()
    ids = backend.encode(body + CLOSE_INFO)
    if len(ids) <= cap:
        return ids, False
    tail = backend.encode(CLOSE_INFO)
    return backend.encode(body)[:max(cap - len(tail), 0)] + tail, True


def check_observed(name: str, item_id: str, docs) -> list[dict]:
    """An evidence condition's ``observe`` return: a list of passages with string ``id`` and
    ``contents``; a copy with ``score`` (None when absent)."""
    who = label("evidence", name)
    if not isinstance(docs, (list, tuple)):
        raise PluginReturnError(f"{who} observe() returned a {type(docs).__name__} for item {item_id!r}, "
                                "expected a list of passages")
    out = []
    for n, d in enumerate(docs):
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("contents"), str):
            raise PluginReturnError(f"{who} observe() returned passage {n} for item {item_id!r} without a string "
                                    "'id' and 'contents'")
        out.append({"id": d["id"], "contents": d["contents"], "score": d.get("score")})
    return out


class Searcher:
    """Runs one condition's rollouts for one arm: ``actx`` (a ``harness.pipeline.ArmContext``),
    ``condition`` (an evidence condition instance called ``name``), ``retriever`` (called
    ``retriever_name`` in error messages)."""

    def __init__(self, actx, settings: LoopSettings, name: str, condition, retriever, retriever_name: str):
        self.actx, self.settings, self.name, self.condition = actx, settings, name, condition
        self.retriever, self.retriever_name = retriever, retriever_name
        b = actx.backend
        self.correction_ids = b.encode(CORRECTION)
        self.final_ids = b.encode(FINAL_INSTRUCTION)

    def run(self, rollouts: list[Rollout]) -> None:
        """Every rollout to its end: at most ``max_turns`` turns with search, then one without."""
        for t in range(self.settings.max_turns + 1):
            active = [r for r in rollouts if not r.done]
            if not active:
                return
            self.turn(active, t, final=t == self.settings.max_turns)

    def turn(self, active: list[Rollout], t: int, final: bool) -> None:
        s, b = self.settings, self.actx.backend
        lead = list(self.final_ids) if final else []
        groups: dict[tuple, list[Rollout]] = {}
        for r in active:
            r.context = r.context + lead
            groups.setdefault((r.item.id, tuple(r.context)), []).append(r)
        requests = [GenRequest(list(key[1]), n=len(group), seeds=[turn_seed(r.seed, t) for r in group],
                               max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                               stop_strings=STOPS, affinity=key[0]) for key, group in groups.items()]
        outs = self.actx.generate(requests, desc=f"{self.actx.arm.name} {self.name}: turn {t + 1}")
        searches = []
        for group, comps in zip(groups.values(), outs):
            for r, c in zip(group, comps):
                close = close_tag(c.text) if c.finish_reason == "stop" else ""
                action, content = parse_action(c.text + close)
                turn = {"turn": t, "search_enabled": not final, "seed": turn_seed(r.seed, t),
                        "lead": FINAL_INSTRUCTION if final else "", "lead_ids": lead,
                        "text": c.text, "token_ids": list(c.token_ids), "finish_reason": c.finish_reason,
                        "close": close, "close_ids": b.encode(close) if close else [],
                        "action": action, "query": content if action == "search" else None,
                        "answer": content if action == "answer" else None,
                        "retrieved_ids": None, "docs": None, "inserted": "", "inserted_ids": [],
                        "inserted_kind": None, "obs_truncated": False}
                r.turns.append(turn)
                r.context = r.context + turn["token_ids"] + turn["close_ids"]
                if action == "answer" or final:
                    r.done = True
                elif action == "search":
                    searches.append(r)
                else:
                    self.insert(r, list(self.correction_ids), "correction")
        if searches:
            self.search(searches)

    def insert(self, r: Rollout, ids: list[int], kind: str, truncated: bool = False) -> None:
        turn = r.turns[-1]
        turn.update(inserted=self.actx.backend.decode(ids), inserted_ids=ids, inserted_kind=kind,
                    obs_truncated=truncated)
        r.context = r.context + ids

    def search(self, rollouts: list[Rollout]) -> None:
        """The turn's queries in one retriever call; each rollout's results through the condition."""
        k = self.settings.topk
        queries = [r.turns[-1]["query"] for r in rollouts]
        results = checked_docs(self.retriever_name, queries, self.retriever.retrieve(queries, k), k)
        for r, docs in zip(rollouts, results):
            shown = check_observed(self.name, r.item.id, self.condition.observe(r.item, r.turns[-1]["query"],
                                                                                [dict(d) for d in docs]))
            r.turns[-1].update(retrieved_ids=[d["id"] for d in docs],
                               docs=[{"id": d["id"], "contents": d["contents"]} for d in shown])
            ids, cut = observation_ids(self.actx.backend, shown, self.settings.max_obs_tokens)
            self.insert(r, ids, "observation", cut)
