"""Who a request's writer is: the key their personal model is stored under."""

import hashlib
from dataclasses import dataclass

WRITER_NAME_MAX_LENGTH = 64
# A browser session's writer key is this and the session key.
SESSION_WRITER = "session:"


@dataclass(frozen=True)
class Writer:
    key: str
    user: object | None  # the account behind it, None for a browser session


def writer_of(*, user, by_token: bool, name: str = "", session_key: str = "") -> Writer | None:
    """The logged-in user; a token client's (user, ``name``) pair; else the browser session.

    ``name`` lets one token client keep a personal model per end user of its own;
    other clients' names are ignored. Anonymous clients without a session have none.
    """
    if user is not None and user.is_authenticated:
        if by_token:
            return Writer(key=f"token:{user.pk}:{name}", user=user)
        return Writer(key=f"user:{user.pk}", user=user)
    if session_key:
        return Writer(key=SESSION_WRITER + session_key, user=None)
    return None


def writer_shown(key: str) -> str:
    """A writer key fit to show staff: a session key works as a login cookie, so a
    browser session is shown by a digest of it."""
    if not key.startswith(SESSION_WRITER):
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"browser session {digest}"
