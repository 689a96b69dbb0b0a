"""Login sessions of the web pages: signed by the token that logged in, expiring, stateless."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliplens.serve.auth import TokenAuth
from cliplens.serve.settings import AuthSettings
from cliplens.serve.web.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def auth_with(tmp_path: Path, *tokens: str) -> TokenAuth:
    file = tmp_path / "tokens"
    file.write_text("\n".join(tokens) + "\n")
    return TokenAuth(AuthSettings(enabled=True, token_file=str(file), token_env=None))


def test_a_valid_token_opens_a_session_that_other_replicas_accept(tmp_path: Path) -> None:
    clock = Clock()
    cookie = Sessions(auth_with(tmp_path, "alpha", "beta"), 3600, clock).open("beta")
    assert cookie is not None and "beta" not in cookie
    other_replica = Sessions(auth_with(tmp_path, "alpha", "beta"), 3600, clock)
    assert other_replica.valid(cookie)


@pytest.mark.parametrize("token", ["", "alph", "alpha ", "gamma"])
def test_invalid_tokens_open_nothing(tmp_path: Path, token: str) -> None:
    assert Sessions(auth_with(tmp_path, "alpha"), 3600).open(token) is None


def test_sessions_expire(tmp_path: Path) -> None:
    clock = Clock()
    sessions = Sessions(auth_with(tmp_path, "alpha"), 60, clock)
    cookie = sessions.open("alpha")
    clock.now += 59
    assert sessions.valid(cookie)
    clock.now += 2
    assert not sessions.valid(cookie)


def test_forged_and_malformed_cookies_are_refused(tmp_path: Path) -> None:
    clock = Clock()
    sessions = Sessions(auth_with(tmp_path, "alpha"), 3600, clock)
    cookie = sessions.open("alpha")
    assert cookie is not None
    expiry, _, signature = cookie.partition(".")
    later = f"{int(expiry) + 10_000}.{signature}"  # the expiry is signed: extending it breaks the signature
    for forged in (later, f"{expiry}.{'0' * len(signature)}", "", None, "abc", ".", f"{expiry}."):
        assert not sessions.valid(forged), forged


def test_removing_a_token_ends_its_sessions(tmp_path: Path) -> None:
    clock = Clock()
    cookie = Sessions(auth_with(tmp_path, "alpha", "beta"), 3600, clock).open("alpha")
    assert not Sessions(auth_with(tmp_path, "beta"), 3600, clock).valid(cookie)


def test_without_auth_everyone_is_logged_in_and_nobody_logs_in() -> None:
    sessions = Sessions(TokenAuth(AuthSettings(enabled=False)), 3600)
    assert not sessions.required
    assert sessions.valid(None)
    assert sessions.open("anything") is None
