"""Bearer token for requests that change state; reads stay open.

With no token configured the API is open (a lab default, REST listens on
127.0.0.1).  The token is compared in constant time and never logged or echoed.
"""
from __future__ import annotations

import hmac
import os

from ryu import cfg

from si_model.validate import ValidationError

TOKEN_ENV = "RYU_SI_TOKEN"
SAFE_METHODS = frozenset({"GET", "HEAD"})
cfg.CONF.register_opts([
    cfg.StrOpt("token", secret=True,
               help=f"bearer token required for REST requests that change state "
                    f"(the {TOKEN_ENV} environment variable wins)"),
], group="si")


class Unauthorized(ValidationError):
    """A 401 that rest.py's error handler answers like any other rejected request;
    ``challenge`` is the WWW-Authenticate value RFC 6750 asks a 401 to carry."""

    challenge = 'Bearer realm="ryu-si"'

    def __init__(self) -> None:
        super().__init__("Authorization", "missing or invalid bearer token", 401)


def token_from_env_or_conf() -> str | None:
    """The configured token, or None when the API is open (an empty value counts as none)."""
    return os.environ.get(TOKEN_ENV) or cfg.CONF.si.token or None


def check(req_method: str, authorization_header: str | None, token: str | None) -> None:
    """Let a read through, and a change only with the token (if one is set)."""
    if req_method.upper() not in SAFE_METHODS:
        require(authorization_header, token)


def require(authorization_header: str | None, token: str | None) -> None:
    """Let any request through when the API is open, else only one with the token."""
    if token is None:
        return
    scheme, _, given = (authorization_header or "").strip().partition(" ")
    # compare_digest on bytes: str would reject non-ASCII input with a TypeError.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise Unauthorized()
