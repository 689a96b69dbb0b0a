"""Login sessions of the web pages: a signed cookie, so that every ingress replica accepts it without
shared state.

The cookie holds ``<expiry>.<signature>``: an HMAC of the expiry keyed by the API token that logged
in. A session is valid while one configured token signs it and it has not expired, so removing a
token from the configuration ends the sessions it opened. The token itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from cliplens.serve.auth import TokenAuth

COOKIE = "cliplens_session"
_CONTEXT = b"cliplens-web-session:"


class Sessions:
    """Opens and checks sessions for ``auth``'s tokens; with auth off every request is logged in."""

    def __init__(self, auth: TokenAuth, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self.auth, self.lifetime_s, self.clock = auth, lifetime_s, clock

    @property
    def required(self) -> bool:
        return self.auth.enabled

    def open(self, token: str) -> str | None:
        """The cookie value of a new session for ``token``; ``None`` when the token is not valid."""
        if not self.auth.enabled or not self.auth.valid(token):
            return None
        expiry = str(int(self.clock() + self.lifetime_s))
        return f"{expiry}.{_sign(token.encode(), expiry)}"

    def valid(self, cookie: str | None) -> bool:
        """Whether a request carrying ``cookie`` is logged in."""
        if not self.auth.enabled:
            return True
        expiry, _, signature = (cookie or "").partition(".")
        if not expiry.isdigit() or int(expiry) <= self.clock():
            return False
        matched = False
        for token in self.auth.tokens:  # every token, no early exit: timing tells nothing
            matched |= hmac.compare_digest(signature, _sign(token, expiry))
        return matched


def _sign(token: bytes, expiry: str) -> str:
    return hmac.new(token, _CONTEXT + expiry.encode(), hashlib.sha256).hexdigest()
