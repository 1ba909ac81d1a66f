"""What an error may show of a value from a settings file: never something that looks secret.

A settings error quotes the bad value so the user can find it, but a misspelt key
(``slack_webhok: https://hooks.slack.com/services/T0/B0/XXXX``) or a value of the wrong type
under a secret field would then print a webhook's token to the console, the journal and any
log collector. A value is masked when its key's name looks secret (webhook, token, password,
secret, key, auth, credential: misspellings included, so by the start of each word) or its
content does (a URL with a path, query or user info; a long random-looking string). A URL keeps
its scheme and host, so the user still sees which value is meant.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
# The start of a word of a key's name: "slack_webhok" and "bot_tokn" are secrets too.
SECRET_WORD_STARTS = (
    "webh",
    "hook",
    "tok",
    "pass",
    "pwd",
    "secr",
    "key",
    "apikey",
    "auth",
    "cred",
    "priv",
)
TOKEN_MIN_CHARS = 20  # shorter strings (an account id, a symbol, a time) are shown
# a URL without its scheme: host.tld[:port]/path
BARE_URL = re.compile(r"^[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}(:\d+)?/\S+$")


def secret_name(name: str) -> bool:
    words = re.split(r"[^a-z0-9]+", name.lower())
    return any(word.startswith(SECRET_WORD_STARTS) for word in words if word)


def secret_text(text: str) -> bool:
    text = text.strip()
    if _url(text) is not None:
        parts = urlsplit(text)
        return bool(
            parts.path.strip("/")
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        )
    if BARE_URL.match(text):
        return True
    return (
        len(text) >= TOKEN_MIN_CHARS
        and not re.search(r"\s|/", text)
        and bool(re.search(r"[a-z]", text))
        and bool(re.search(r"[A-Z]", text))
        and bool(re.search(r"[0-9]", text))
    )


def masked_text(text: str) -> str:
    """``text`` with everything but a URL's scheme and host replaced by ``MASK``."""
    parts = _url(text.strip())
    if parts is None:
        return MASK
    return f"{parts.scheme}://{parts.hostname or ''}{_port(parts)}/{MASK}"


def redacted(value: Any, secret_key: bool = False) -> Any:
    """``value`` with every string that is (or sits under a key that is) secret masked;
    lists and mappings are walked, other values returned as they are."""
    if isinstance(value, str):
        return masked_text(value) if secret_key or secret_text(value) else value
    if secret_key and isinstance(value, int | float) and not isinstance(value, bool):
        return MASK  # a PIN or a numeric token is a secret too
    if isinstance(value, dict):
        return {
            redacted(k): redacted(v, secret_key or (isinstance(k, str) and secret_name(k)))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redacted(v, secret_key) for v in value)
    return value


def secret_strings(value: Any, secret_key: bool = False) -> list[str]:
    """Every string in ``value`` that ``redacted`` would mask."""
    if isinstance(value, str):
        return [value] if value and (secret_key or secret_text(value)) else []
    if isinstance(value, dict):
        return [
            s
            for k, v in value.items()
            for s in [
                *secret_strings(k),
                *secret_strings(v, secret_key or (isinstance(k, str) and secret_name(k))),
            ]
        ]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in secret_strings(v, secret_key)]
    return []


def scrubbed(text: str, secrets: list[str]) -> str:
    """``text`` (e.g. a validator's message, which may quote its input) with each of
    ``secrets`` masked, the longest first (a URL whole before a part of it)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        # any case: a validator may have normalised it (symbols are upper-cased)
        parts = re.split(re.escape(secret), text, flags=re.IGNORECASE)
        text = masked_text(secret).join(parts)
    return text


def _url(text: str) -> Any:
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced '[' in the host
        return None
    return parts if parts.scheme and parts.netloc and " " not in text else None


def _port(parts: Any) -> str:
    try:
        return f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
