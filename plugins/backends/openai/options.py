"""The ``openai`` backend's arm options, checked: BadInput naming the arm and the option."""

from __future__ import annotations

import urllib.parse

from harness.backend_base import ServerBackend
from harness.errors import BadInput

PROMPT_MODES = ("auto", "tokens", "text")
SCORE_METHODS = ("auto", "echo", "grammar")


def base_url(url: str) -> str:
    """A server's base URL: trailing ``/`` and ``/v1`` dropped (the backend adds ``/v1/completions``)."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def public_url(url: str) -> str:
    """``url`` without user:password, for the manifest."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_options(arm) -> dict:
    """The arm's options, validated, with their defaults filled in."""
    o = arm.options
    where = f"arm {arm.name!r} (backend openai)"
    urls = ServerBackend.server_urls(arm)
    if not urls:
        raise BadInput(f"{where} needs a server URL: pass --backend-url http://HOST:PORT (repeatable) or set "
                       "options = { url = \"http://...\" } in the arms file", param_hint="--backend-url")
    mode = str(o.get("prompt_mode", "auto")).lower()
    if mode not in PROMPT_MODES:
        raise BadInput(f"{where}: prompt_mode {mode!r}; valid: {', '.join(PROMPT_MODES)}", param_hint="--arms-file")
    score_method = str(o.get("score_method", "auto")).lower()
    if score_method not in SCORE_METHODS:
        raise BadInput(f"{where}: score_method {score_method!r}; valid: {', '.join(SCORE_METHODS)}",
                       param_hint="--arms-file")
    out = {"urls": [base_url(u) for u in urls], "prompt_mode": mode, "score_method": score_method,
           "served_model": str(o.get("served_model") or arm.model),
           "tokenizer": ServerBackend.tokenizer_of(arm),
           "api_key_env": str(o.get("api_key_env", "OPENAI_API_KEY")),
           "neutral_sampling": _truthy(o.get("neutral_sampling", True))}
    numbers = (("concurrency", int, 8, 1), ("retries", int, 4, 0), ("timeout", float, 120.0, 0.001))
    for key, kind, default, low in numbers:
        try:
            out[key] = kind(o.get(key, default))
        except (TypeError, ValueError):
            raise BadInput(f"{where}: option {key} must be a number, got {o.get(key)!r}", param_hint="--arms-file")
        if out[key] < low:
            raise BadInput(f"{where}: option {key} must be at least {low}", param_hint="--arms-file")
    top_k = o.get("top_k")
    try:
        out["top_k"] = None if top_k in (None, "auto") else int(top_k)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: option top_k must be an integer or \"auto\", got {top_k!r}", param_hint="--arms-file")
    extra = o.get("extra_body", {})
    if not isinstance(extra, dict):
        raise BadInput(f"{where}: option extra_body must be a table (dict)", param_hint="--arms-file")
    out["extra_body"] = dict(extra)
    return out
