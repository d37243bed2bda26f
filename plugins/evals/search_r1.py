"""Eval ``search_r1``: multi-turn search-augmented QA in the Search-R1 protocol, and the
evidence-use probe.

Each arm answers every question of the run's tasks (``search_fixture`` by default; the FlashRAG
QA tasks) by writing ``<search> query </search>`` to call the run's retriever (``--retriever``,
default ``bm25``) and ``<answer> ... </answer>`` to finish; the loop itself, all in token ids, is
:mod:`plugins.evals.search_loop`. Defaults follow the protocol's evaluation: greedy decoding
(temperature 0, top_p 1), one sample, at most 512 new tokens per turn, top-3 passages, 4 turns with
search then one answer-only turn, observations capped at 500 tokens.

The conditions (``--intervention``) are evidence conditions (``plugins/evidence``): ``normal``
(passages as retrieved), ``no_results``, ``swapped_docs`` (another question's passages) and
``gold_doc`` (the gold passage first; items without one are skipped and counted). ``normal -
condition`` on EM says how much the arm uses what it reads.

Options (``--option``): ``topk``, ``max_turns``, ``max_obs_tokens``, ``template`` (a prompt file
used byte for byte; ``{question}`` is replaced by the question; default
``search_r1_template.txt`` beside this module) and ``chat`` (the template's text as the user
message of the arm's chat template). Per arm (arms file ``options``): ``search_template`` (a
template file for this arm: checkpoints trained with different prompts run in one paired run) and
``search_chat`` override ``template`` and ``chat``; ``enable_thinking`` is passed to a backend
whose ``chat_prompt`` takes it.

Records (``samples.jsonl``, :class:`harness.protocols.SearchRecord`): one per arm x condition x
item x sample with every turn; graded from the records alone (``harness rescore RUN_DIR``).
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.protocols import member

from plugins.evals.search_loop import LoopSettings, Rollout, Searcher, final_answer

DEFAULT_TEMPLATE = Path(__file__).with_name("search_r1_template.txt")
PLACEHOLDER = "{question}"

RUN_OPTIONS = (
    Option("topk", int, 3, "passages per search", low=1, high=100),
    Option("max_turns", int, 4, "turns in which the arm may search, before one answer-only turn", low=1, high=64),
    Option("max_obs_tokens", int, 500, "token cap of one observation (the passages are cut)", low=16),
    Option("template", str, None, "prompt template file, used byte for byte; must contain {question}"),
    Option("chat", bool, False, "put the prompt in the arm's chat template (arm option search_chat overrides)"),
)


@hookimpl
def register_evals(register):
    register(SearchR1)


def parse_run_options(options: dict) -> dict:
    """This eval's ``--option`` values, typed."""
    return parse_options(RUN_OPTIONS, dict(options), "search_r1 eval", "--option")


def load_template(path: str | None) -> tuple[str, str]:
    """(template text, its sha256) from ``path`` (default: the packaged template), read as bytes and
    decoded as UTF-8 with nothing stripped; BadInput unless it holds ``{question}``."""
    where = Path(path) if path else DEFAULT_TEMPLATE
    try:
        data = where.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"template={where}: cannot read it as UTF-8 text ({type(exc).__name__})",
                       param_hint="--option") from None
    if PLACEHOLDER not in text:
        raise BadInput(f"template={where} has no {PLACEHOLDER} placeholder", param_hint="--option")
    return text, hashlib.sha256(data).hexdigest()


def _flag(value, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return Option(what, bool).parse(value, "arm option", "--arms-file")


def arm_template(arm, opts: dict) -> str | None:
    """The arm's template file: its ``search_template`` option, else ``--option template``."""
    path = arm.options.get("search_template")
    return str(path) if path else opts["template"]


def chat_settings(arm, opts: dict, backend_cls) -> tuple[bool, dict]:
    """(whether the arm's prompt goes through its chat template, ``chat_prompt`` keyword arguments)."""
    chat = _flag(arm.options.get("search_chat"), "search_chat")
    chat = opts["chat"] if chat is None else chat
    thinking = _flag(arm.options.get("enable_thinking"), "enable_thinking")
    if not chat:
        return False, {}
    if not callable(getattr(backend_cls, "chat_prompt", None)):
        raise BadInput(f"arm {arm.name!r}: backend {arm.backend!r} has no chat template support (chat_prompt); "
                       "use the plain prompt (--option chat=false)", param_hint="--option")
    if thinking is None:
        return True, {}
    params = inspect.signature(backend_cls.chat_prompt).parameters.values()
    if not any(p.name == "enable_thinking" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise BadInput(f"arm {arm.name!r}: backend {arm.backend!r}'s chat_prompt takes no enable_thinking; drop "
                       "the arm option enable_thinking", param_hint="--arms-file")
    return True, {"enable_thinking": thinking}


def golden_answers(item) -> list[str]:
    """The item's golden answers (``meta["golden_answers"]``, a list of strings; [] without)."""
    golds = item.meta.get("golden_answers")
    if isinstance(golds, str):
        golds = [golds]
    return [str(g) for g in golds or () if str(g).strip()]


def grade(rec: dict) -> dict:
    """Fill a record's answer and metrics in place from its turns and golden answers: the final
    answer (the last ``<answer>`` the model wrote), em, sub_em, f1, no_answer and
    answer_in_retrieved (a passage shown after a search holds a golden answer; None without one)."""
    from tasks.qa_metrics import exact_match, f1_score, passage_has_answer, sub_exact_match

    golds, turns = rec["golden_answers"], rec["turns"]
    pred = final_answer(turns)
    shown = [d["contents"] for t in turns if t.get("docs") is not None for d in t["docs"]]
    searched = any(t.get("docs") is not None for t in turns)
    rec.update(prediction=pred, em=exact_match(pred, golds), sub_em=sub_exact_match(pred, golds),
               f1=f1_score(pred, golds), no_answer=pred is None,
               answer_in_retrieved=any(passage_has_answer(p, golds) for p in shown) if searched else None)
    return rec


def _base_row(arm: str, cond: str, item, s: int) -> dict:
    return {"eval": "search_r1", "arm": arm, "condition": cond, "item_id": item.id, "sample": s,
            "cluster": item.cluster, "dataset": str(item.meta.get("dataset") or "default"),
            "hops": item.meta.get("hops"), "question": item.prefix, "golden_answers": golden_answers(item)}


def record(arm: str, cond: str, r: Rollout, prompt: dict) -> dict:
    """The record of one finished rollout (graded)."""
    turns = r.turns
    row = {**_base_row(arm, cond, r.item, r.sample), "skipped": False, "seed": r.seed, **prompt,
           "turns": turns, "n_turns": len(turns),
           "n_searches": sum(t["docs"] is not None for t in turns),
           "n_invalid": sum(t["action"] == "invalid" for t in turns),
           "completion_tokens": sum(len(t["token_ids"]) for t in turns),
           "inserted_tokens": sum(len(t["lead_ids"]) + len(t["close_ids"]) + len(t["inserted_ids"]) for t in turns),
           "finish_reason": turns[-1]["finish_reason"] if turns else None}
    return grade(row)


class SearchR1:
    name = "search_r1"
    description = "multi-turn search-augmented QA (Search-R1 protocol): EM, sub-EM, F1, searches; evidence-use probe"
    record_type = "search"
    uses_judge = False
    uses_retriever = True
    conditions = "evidence"
    graded_field = "em"
    defaults = {"samples": 1, "limit": None, "tasks": ("search_fixture",), "interventions": ("normal",),
                "max_new_tokens": 512, "temperature": 0.0, "top_p": 1.0}
    run_options = {o.key: o.help for o in RUN_OPTIONS}
    # rollouts (items x samples) run together, every turn one generate call, then appended to the
    # store: a killed run loses at most these
    chunk_rollouts = 128

    @classmethod
    def check_options(cls, options: dict) -> None:
        opts = parse_run_options(options)
        load_template(opts["template"])

    @classmethod
    def check_setup(cls, arms, judge, config: dict, items=()) -> None:
        """Refuse before any work: items without golden answers, arms whose backend cannot apply the
        chat template (or take ``enable_thinking``) when asked to, a run without a retriever."""
        from harness.plugins import registry

        opts = parse_run_options(config.get("options") or {})
        if config.get("retriever") is None:
            raise BadInput("the search_r1 eval needs a retriever (--retriever)", param_hint="--retriever")
        bare = [i.id for i in items if not golden_answers(i)]
        if bare:
            raise BadInput(f"item {bare[0]!r} has no golden answers (meta golden_answers): use a QA task such as "
                           "search_fixture", param_hint="--task")
        for arm in arms:
            chat_settings(arm, opts, registry("backends").get(arm.backend))
            load_template(arm_template(arm, opts))

    def run(self, ctx) -> None:
        from harness.pipeline import ArmContext
        from harness.plugins import registry
        from harness.store import SAMPLES

        cfg = ctx.config
        self.check_setup(ctx.arms, ctx.judge, cfg, ctx.items)
        opts = parse_run_options(cfg["options"])
        stored = ctx.store.read(SAMPLES)
        templates = {arm.name: load_template(arm_template(arm, opts)) for arm in ctx.arms}
        changed = [r for r in stored if not r.get("skipped") and r["arm"] in templates
                   and r.get("template_sha") not in (None, templates[r["arm"]][1])]
        if changed:
            sha = templates[changed[0]["arm"]][1]
            raise BadInput(f"arm {changed[0]['arm']!r}: the prompt template changed since this run's records were "
                           f"made (record sha {changed[0]['template_sha'][:12]}, file sha {sha[:12]}): use a new --out",
                           param_hint="--option")
        done = {(r["arm"], r["condition"], r["item_id"], r["sample"]) for r in stored}
        k = cfg["samples"]
        settings = LoopSettings(cfg["max_new_tokens"], cfg["temperature"], cfg["top_p"], opts["topk"],
                                opts["max_turns"], opts["max_obs_tokens"])
        for arm in ctx.arms:
            actx = None
            template, sha = templates[arm.name]
            for cond in cfg["interventions"]:
                condition = ctx.interventions[cond]()
                applies = member(condition, "evidence", "applies")
                todo = [(i, s) for i in ctx.items for s in range(k) if (arm.name, cond, i.id, s) not in done]
                fits = {i.id for i in ctx.items if applies is None or applies(i)}
                skipped = [(i, s) for i, s in todo if i.id not in fits]
                if skipped:
                    rows = [{**_base_row(arm.name, cond, i, s), "skipped": True,
                             "skip_reason": f"evidence condition {cond!r} does not apply to this item"}
                            for i, s in skipped]
                    ctx.store.append(rows)
                    ctx.stats["new_records"] += len(rows)
                todo = [(i, s) for i, s in todo if i.id in fits]
                if not todo:
                    continue
                if actx is None:
                    actx = ArmContext(arm, ctx.make_backend(arm), cfg, ctx.items, ctx)
                    chat, chat_kw = chat_settings(arm, opts, registry("backends").get(arm.backend))
                prepare = member(condition, "evidence", "prepare")
                if prepare is not None:
                    prepare(ctx, ctx.items)
                searcher = Searcher(actx, settings, cond, condition, ctx.retriever,
                                    (cfg.get("retriever") or {}).get("name", "?"))
                prompts: dict[str, list[int]] = {}
                for start in range(0, len(todo), self.chunk_rollouts):
                    part = todo[start:start + self.chunk_rollouts]
                    for item, _ in part:
                        if item.id not in prompts:
                            prompts[item.id] = self.prompt_ids(actx, item, template, chat, chat_kw)
                    rollouts = [Rollout(item, s, actx.seed(item.id, cond, s, "search"), list(prompts[item.id]))
                                for item, s in part]
                    searcher.run(rollouts)
                    prompt = {"template_sha": sha, "chat": chat}
                    rows = [dict(record(arm.name, cond, r, prompt), prompt_tokens=len(prompts[r.item.id]))
                            for r in rollouts]
                    ctx.store.append(rows)
                    ctx.stats["new_records"] += len(rows)
            if actx is not None:
                actx.close_bars()

    @staticmethod
    def prompt_ids(actx, item, template: str, chat: bool, chat_kw: dict) -> list[int]:
        """The prompt's ids: the template with the question in it, through the arm's chat template
        (``chat``) or after the arm's prompt prefix; encoded once."""
        text = template.replace(PLACEHOLDER, item.prefix)
        if chat:
            text = actx.backend.chat_prompt([{"role": "user", "content": text}], **chat_kw)
        else:
            text = actx.arm.prompt_prefix + text
        return actx.backend.encode(text)

    def regrade(self, records, manifest, **options) -> list[dict]:
        """Every record's answer and metrics again from its turns (no generation)."""
        return [r if r.get("skipped") else grade(dict(r)) for r in records]

    def summarize(self, records, manifest) -> dict:
        from reports.search import summarize

        return summarize(records, manifest)
