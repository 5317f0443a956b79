"""Authentication and authorization: htpasswd Basic auth, or Bearer tokens from a built-in token endpoint.

Both read an htpasswd file of bcrypt hashes. With :class:`BasicAuth` every valid user may do
everything, unless an access policy (:mod:`berth.registry.policy`) says otherwise. With
:class:`TokenAuth`, ``GET /token?service=..&scope=repository:NAME:pull,push`` checks
Basic credentials and issues an HMAC-SHA256 signed, JWT-shaped token listing the granted access; the
registry then requires the action at hand to be in that list (403 DENIED otherwise); with a policy the
token grants only what the policy allows. Anonymous pulls and catalog reads are allowed when the
registry is started with ``allow_anonymous_read`` (or, with a policy, where its anonymous rules say).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from aiohttp import web

from berth.registry.endpoints.credentials import FailureLimiter, Htpasswd, basic_credentials
from berth.registry.model.errors import RegistryError
from berth.registry.model.names import valid_name
from berth.registry.policy import Policy

REALM = "Berth Registry"
SERVICE = "berth-registry"
ACTIONS = ("pull", "push", "delete")


@dataclass(frozen=True)
class Access:
    """One permission: ``repository:<name>:<action>`` or ``registry:catalog:*``."""

    type: str
    name: str
    action: str


def catalog_access() -> Access:
    return Access("registry", "catalog", "*")


def scope_string(needed: list[Access]) -> str:
    """The challenge scope; a push also asks for pull because clients HEAD before they upload."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in needed:
        acts = grouped.setdefault((a.type, a.name), [])
        extra = ["pull", a.action] if a.action == "push" else [a.action]
        for act in extra:
            if act not in acts:
                acts.append(act)
    return " ".join(f"{t}:{n}:{','.join(acts)}" for (t, n), acts in grouped.items())


class Grant:
    """What a caller may do: ``rules`` of (type, name or ``*``, actions with ``*`` meaning all)."""

    def __init__(self, subject: str, rules: list[tuple[str, str, frozenset[str]]]) -> None:
        self.subject = subject
        self.rules = rules

    def allows(self, a: Access) -> bool:
        # Names are globs (policy patterns); repository names cannot contain glob characters.
        for t, n, acts in self.rules:
            if t == a.type and (n == a.name or fnmatchcase(a.name, n)) and ("*" in acts or a.action in acts):
                return True
        return False

    @classmethod
    def everything(cls, subject: str) -> Grant:
        return cls(subject, [("repository", "*", frozenset({"*"})), ("registry", "*", frozenset({"*"}))])

    @classmethod
    def from_policy(cls, policy: Policy, user: str | None) -> Grant:
        rules = [("repository", pattern, acts) for pattern, acts in policy.patterns(user)]
        if policy.may_list_catalog(user):
            rules.append(("registry", "catalog", frozenset({"*"})))
        return cls(user or "", rules)

    @classmethod
    def anonymous_read(cls) -> Grant:
        return cls("", [("repository", "*", frozenset({"pull"})), ("registry", "catalog", frozenset({"*"}))])


def denied(needed: list[Access], grant: Grant) -> RegistryError:
    return RegistryError("DENIED", detail=[{"Type": a.type, "Name": a.name, "Action": a.action}
                                           for a in needed if not grant.allows(a)])


def read_only(needed: list[Access]) -> bool:
    """Whether anonymous read covers the request (the bare ``/v2/`` ping still challenges)."""
    return bool(needed) and all(a.action == "pull" or a == catalog_access() for a in needed)


class Auth(ABC):
    def __init__(self, htpasswd: Htpasswd) -> None:
        self.htpasswd = htpasswd
        self.limiter = FailureLimiter()
        self.anonymous_read = False  # set by the application (its allow_anonymous_read)
        self.policy: Policy | None = None  # per-repository rules; None lets every valid user do everything

    def user_grant(self, user: str) -> Grant:
        return Grant.from_policy(self.policy, user) if self.policy is not None else Grant.everything(user)

    def anonymous(self, needed: list[Access], anonymous_read: bool) -> Grant | None:
        """The grant for a caller without credentials when it covers ``needed`` (never the bare ping)."""
        if not needed:
            return None
        if self.policy is not None:
            grant = Grant.from_policy(self.policy, None)
            return grant if all(grant.allows(a) for a in needed) else None
        return Grant.anonymous_read() if anonymous_read and read_only(needed) else None

    @abstractmethod
    async def authorize(self, request: web.Request, needed: list[Access], anonymous_read: bool) -> Grant:
        """The caller's grant covering ``needed``, or a 401/403/429 RegistryError."""

    def setup(self, app: web.Application, anonymous_read: bool = False) -> None:
        """Remember the anonymous-read setting and add any routes the scheme needs (the token endpoint)."""
        self.anonymous_read = anonymous_read

    async def login(self, request: web.Request) -> str | None:
        """The user named by valid Basic credentials; None without credentials; 401 when they are wrong."""
        creds = basic_credentials(request)
        if creds is None:
            return None
        key = request.remote or "?"
        self.limiter.check(key)
        if not await self.htpasswd.verify(*creds):
            self.limiter.failed(key)
            raise RegistryError("UNAUTHORIZED", "invalid username or password",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        return creds[0]


class BasicAuth(Auth):
    async def authorize(self, request: web.Request, needed: list[Access], anonymous_read: bool) -> Grant:
        user = await self.login(request)
        if user is not None:
            grant = self.user_grant(user)
            if all(grant.allows(a) for a in needed):
                return grant
            raise denied(needed, grant)
        anon = self.anonymous(needed, anonymous_read)
        if anon is not None:
            return anon
        raise RegistryError("UNAUTHORIZED", headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuth(Auth):
    """Bearer tokens signed with ``secret``; ``realm`` defaults to this server's ``/token``."""

    ISSUER = "berth-registry"
    LEEWAY = 30

    def __init__(self, htpasswd: Htpasswd, secret: bytes | None = None, *, realm: str | None = None,
                 service: str = SERVICE, ttl: int = 300) -> None:
        super().__init__(htpasswd)
        self.secret = secret or secrets.token_bytes(32)
        self.realm, self.service, self.ttl = realm, service, ttl

    # -- tokens --

    def issue(self, subject: str, access: list[dict[str, Any]], now: float | None = None) -> tuple[str, int]:
        iat = int(now if now is not None else time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {"iss": self.ISSUER, "sub": subject, "aud": self.service, "iat": iat, "nbf": iat - 1,
                  "exp": iat + self.ttl, "jti": secrets.token_hex(8), "access": access}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = hmac.new(self.secret, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}", iat

    def verify(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        want = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(want, _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError):
            return None
        now = time.time()
        if not isinstance(claims, dict) or claims.get("aud") != self.service or claims.get("iss") != self.ISSUER:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now - self.LEEWAY:
            return None
        if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + self.LEEWAY:
            return None
        return claims

    @staticmethod
    def grant_of(claims: dict[str, Any]) -> Grant:
        rules: list[tuple[str, str, frozenset[str]]] = []
        for item in claims.get("access") or []:
            if isinstance(item, dict) and isinstance(item.get("actions"), list):
                rules.append((str(item.get("type")), str(item.get("name")), frozenset(map(str, item["actions"]))))
        return Grant(str(claims.get("sub") or ""), rules)

    # -- challenges --

    def realm_for(self, request: web.Request) -> str:
        return self.realm or f"{request.scheme}://{request.host}/token"

    def challenge(self, request: web.Request, needed: list[Access], error: str | None = None) -> RegistryError:
        value = f'Bearer realm="{self.realm_for(request)}",service="{self.service}"'
        if needed:
            value += f',scope="{scope_string(needed)}"'
        if error:
            value += f',error="{error}"'
        return RegistryError("UNAUTHORIZED", headers={"WWW-Authenticate": value},
                             detail=[{"Type": a.type, "Name": a.name, "Action": a.action} for a in needed] or None)

    async def authorize(self, request: web.Request, needed: list[Access], anonymous_read: bool) -> Grant:
        value = request.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            anon = self.anonymous(needed, anonymous_read)
            if anon is not None:
                return anon
            raise self.challenge(request, needed)
        claims = self.verify(token.strip())
        if claims is None:
            raise self.challenge(request, needed, "invalid_token")
        grant = self.grant_of(claims)
        if all(grant.allows(a) for a in needed):
            return grant
        anon = self.anonymous(needed, anonymous_read)
        if anon is not None:
            return anon
        if not grant.subject:
            raise self.challenge(request, needed, "insufficient_scope")  # anonymous: let the client log in
        raise denied(needed, grant)

    # -- the token endpoint --

    def setup(self, app: web.Application, anonymous_read: bool = False) -> None:
        super().setup(app, anonymous_read)
        app.router.add_route("GET", "/token", self.token_endpoint)
        app.router.add_route("POST", "/token", self.token_endpoint)

    def _granted(self, scopes: list[str], user: str | None, anonymous_read: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, acts = rest.rpartition(":")
            wanted = [a for a in acts.split(",") if a]
            if typ == "repository" and valid_name(name) and self.policy is not None:
                allowed = self.policy.actions(user, name)
                wanted = list(ACTIONS) if "*" in wanted else wanted
                actions = [a for a in wanted if a in allowed]
            elif typ == "repository" and valid_name(name):
                allowed = set(ACTIONS) if user is not None else ({"pull"} if anonymous_read else set())
                wanted = list(ACTIONS) if "*" in wanted else wanted
                actions = [a for a in wanted if a in allowed]
            elif typ == "registry" and name == "catalog":
                may = self.policy.may_list_catalog(user) if self.policy is not None else (
                    user is not None or anonymous_read)
                actions = ["*"] if "*" in wanted and may else []
            else:
                continue
            if actions:
                out.append({"type": typ, "name": name, "actions": actions})
        return out

    async def token_endpoint(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            # The OAuth2 password grant some clients use instead of Basic on GET.
            form = await request.post()
            params: dict[str, Any] = {"scope": [str(v) for v in form.getall("scope", [])]}
            user: str | None = None
            if form.get("grant_type") == "password":
                creds = (str(form.get("username", "")), str(form.get("password", "")))
                key = request.remote or "?"
                self.limiter.check(key)
                if not await self.htpasswd.verify(*creds):
                    self.limiter.failed(key)
                    raise RegistryError("UNAUTHORIZED", "invalid username or password")
                user = creds[0]
            else:
                raise RegistryError("UNSUPPORTED", "only grant_type=password is supported", status=400)
        else:
            params = {"scope": request.query.getall("scope", [])}
            user = await self.login(request)
        scopes = [s for value in params["scope"] for s in value.split(" ") if s]
        access = self._granted(scopes, user, self.anonymous_read)
        token, iat = self.issue(user or "", access)
        issued = datetime.fromtimestamp(iat, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}
        return web.json_response(body)


def auth_from_spec(spec: str, *, token_secret: bytes | None = None, token_realm: str | None = None,
                   service: str = SERVICE, policy: Policy | None = None) -> Auth:
    """``htpasswd:FILE`` for Basic auth, ``token:FILE`` for Bearer tokens checked against FILE."""
    kind, _, path = spec.partition(":")
    if not path:
        raise ValueError(f"--auth {spec!r}: expected htpasswd:FILE or token:FILE")
    auth: Auth
    if kind == "htpasswd":
        auth = BasicAuth(Htpasswd(path))
    elif kind == "token":
        auth = TokenAuth(Htpasswd(path), token_secret, realm=token_realm, service=service)
    else:
        raise ValueError(f"--auth {spec!r}: unknown scheme {kind!r}")
    auth.policy = policy
    return auth
