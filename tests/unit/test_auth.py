"""auth: a bearer token guards requests that change state."""
from __future__ import annotations

import logging

import pytest
from ryu import cfg

from ryu_si.api import auth
from si_model.validate import ValidationError

TOKEN = "s3cret-token"


@pytest.mark.parametrize("method", ["GET", "HEAD", "get"])
def test_reads_need_no_token(method):
    auth.check(method, None, TOKEN)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_token_configured_leaves_the_api_open(method):
    auth.check(method, None, None)


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  BEARER   {TOKEN} "])
def test_the_right_token_passes(header):
    auth.check("POST", header, TOKEN)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN,
                                    "Bearer t\u00f6ken"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_missing_or_wrong_token_is_401_naming_the_header(method, header):
    with pytest.raises(auth.Unauthorized) as e:
        auth.check(method, header, TOKEN)
    assert isinstance(e.value, ValidationError)   # rest.py's handler answers it as is
    assert e.value.to_dict() == {"error": "missing or invalid bearer token",
                                 "field": "Authorization", "status": 401}
    assert e.value.challenge.startswith("Bearer ")


def test_the_comparison_is_constant_time(monkeypatch):
    seen = []

    def spy(a, b):
        seen.append((type(a), type(b)))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    auth.check("POST", f"Bearer {TOKEN}", TOKEN)
    assert seen == [(bytes, bytes)]


def test_the_token_is_never_logged_or_echoed(caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(auth.Unauthorized) as e:
        auth.check("POST", "Bearer wrong-guess", TOKEN)
    assert caplog.records == []
    text = f"{e.value} {e.value!r} {e.value.to_dict()}"
    assert TOKEN not in text and "wrong-guess" not in text


@pytest.fixture
def conf_token():
    def set_token(value: str | None) -> None:
        cfg.CONF.set_override("token", value, group="si")
    yield set_token
    cfg.CONF.clear_override("token", group="si")


def test_token_from_the_environment_wins(monkeypatch, conf_token):
    conf_token("from-conf")
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    assert auth.token_from_env_or_conf() == "from-env"


def test_token_from_the_config_file(monkeypatch, conf_token):
    conf_token("from-conf")
    monkeypatch.setenv(auth.TOKEN_ENV, "")
    assert auth.token_from_env_or_conf() == "from-conf"


def test_no_token_anywhere_means_open(monkeypatch, conf_token):
    conf_token("")
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    assert auth.token_from_env_or_conf() is None
