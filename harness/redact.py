"""One redaction for everything the harness records or prints: option values under secret-looking
keys, ``KEY=VALUE`` arguments with such keys, and the user-info part of URLs.

Secrets come from the environment (``api_key_env``-style options); a secret given on the command
line or in an arms file still works for the run but is never written to a manifest, a record or
the console.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
# Whole words of a key (split at _ - . and camelCase) that mark its value as a secret.
SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "auth", "authorization",
                "credential", "credentials", "cookie", "bearer"}
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&#\s]+)=(?P<value>[^&#\s]*)")


def is_secret_key(key: str) -> bool:
    """Whether an option called ``key`` holds a secret (``api_key``, ``hf_token``, ``apiKey``; not
    ``max_tokens``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(key))
    words = [w.lower() for w in re.split(r"[\s_.\-]+", spaced) if w]
    return any(w in SECRET_WORDS for w in words)


def redact_text(text: str) -> str:
    """A string with URL user-info, secret query parameters and ``SECRET_KEY=value`` redacted."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _QUERY_PAIR.sub(lambda m: f"{m['sep']}{m['key']}={REDACTED}" if is_secret_key(m["key"]) else m[0], text)
    key, eq, value = text.partition("=")
    if eq and "://" not in key and " " not in key.strip() and is_secret_key(key.strip().lstrip("-")):
        return f"{key}={REDACTED}"
    return text


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (JSON-like) with every secret redacted: values under secret keys at any
    depth, and secrets inside strings (see :func:`redact_text`)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    """The command line as recorded: secrets in ``KEY=VALUE`` arguments and URLs redacted, and the
    value after a flag whose name looks secret (``--api-key VALUE``)."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("--") and "=" not in arg and is_secret_key(arg[2:]):
            hide_next = True
        out.append(redact_text(arg))
    return out
