"""A registry client (OCI Distribution / Registry HTTP API v2) for pull, push and login.

Authentication follows the challenge the registry sends: Basic with the user's
credentials, or Bearer with a token fetched from the realm the challenge names.
Loopback registries and those given with ``--insecure-registry`` are spoken to over
plain HTTP, as Docker does; everything else over HTTPS.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from berth.errors import BerthError, InvalidParameter, NotFound

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(BerthError):
    status = 500


class Unauthorized(RegistryError):
    status = 401


@dataclass
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    @classmethod
    def from_header(cls, header: str | None) -> Credentials:
        """X-Registry-Auth: base64url JSON {"username", "password", "identitytoken", ...}."""
        if not header:
            return cls()
        try:
            raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, json.JSONDecodeError):
            return cls()
        return cls(data.get("username") or "", data.get("password") or "", data.get("identitytoken") or "")


@dataclass
class RegistryConfig:
    insecure: list[str] = field(default_factory=list)  # host[:port] or CIDRs
    mirrors: list[str] = field(default_factory=list)

    def scheme(self, host: str) -> str:
        name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
        if name == "localhost":
            return "http"
        try:
            ip = ipaddress.ip_address(name)
            if ip.is_loopback:
                return "http"
            for entry in self.insecure:
                if "/" in entry and ip in ipaddress.ip_network(entry, strict=False):
                    return "http"
        except ValueError:
            pass
        return "http" if host in self.insecure or name in self.insecure else "https"

    def mirror_for(self, domain: str) -> str | None:
        """The mirror to pull ``domain``'s images through: ``--registry-mirror URL`` mirrors Docker Hub
        (as Docker's does); ``--registry-mirror HOST[:PORT]=URL`` mirrors that registry (any registry)."""
        for entry in self.mirrors:
            target, sep, url = entry.partition("=")
            if not sep:
                target, url = "docker.io", entry
            if target in (domain, "*"):
                return url.rstrip("/")
        return None

    def endpoint(self, domain: str, *, push: bool = False) -> str:
        """Where to talk to ``domain``'s registry: its mirror for pulls when one is set, itself for pushes."""
        mirror = None if push else self.mirror_for(domain)
        if mirror:
            return mirror
        if domain == "docker.io":
            return "https://registry-1.docker.io"
        return f"{self.scheme(domain)}://{domain}"


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


class Registry:
    """One registry and one repository's worth of authorisation (``scope``)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, repo: str, creds: Credentials,
                 actions: str = "pull") -> None:
        self.session = session
        self.base = base
        self.repo = repo
        self.creds = creds
        self.actions = actions
        self._auth: str | None = None

    async def _authorize(self, resp: aiohttp.ClientResponse) -> bool:
        """Answer a 401 challenge; return False when we have nothing better to offer."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.creds.username or self._auth == _basic(self.creds):
                return False
            self._auth = _basic(self.creds)
            return True
        if scheme == "bearer":
            params = dict(_CHALLENGE.findall(challenge))
            realm = params.get("realm")
            if not realm:
                return False
            query = {"service": params.get("service", "")}
            # ask for everything this session will do (a push also pulls), not just what the
            # first request needed, so one token serves the whole push
            scope = f"repository:{self.repo}:{self.actions}" if self.repo else params.get("scope", "")
            if scope:
                query["scope"] = scope
            headers = {}
            if self.creds.username:
                headers["Authorization"] = _basic(self.creds)
                query["account"] = self.creds.username
            async with self.session.get(realm, params=query, headers=headers) as r:
                if r.status in (401, 403):
                    raise Unauthorized(f"authentication required: {r.status} from the token service")
                if r.status != 200:
                    raise RegistryError(f"token service answered {r.status}")
                try:
                    body = await r.json(content_type=None)
                except ValueError as e:
                    raise RegistryError(f"token service answered with invalid JSON: {e}") from e
            if not isinstance(body, dict):
                raise RegistryError("token service answered with something other than a JSON object")
            token = body.get("token") or body.get("access_token")
            if not token or self._auth == f"Bearer {token}":
                return False
            self._auth = f"Bearer {token}"
            return True
        return False

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, data: Any = None,
                      params: dict[str, str] | None = None, allow: tuple[int, ...] = ()) -> aiohttp.ClientResponse:
        """A request with auth retried once after a challenge. The caller releases the response."""
        url = path if path.startswith("http") else self.base + path
        for _attempt in range(3):
            h = dict(headers or {})
            if self._auth:
                h["Authorization"] = self._auth
            resp = await self.session.request(method, url, headers=h, data=data, params=params,
                                              allow_redirects=True)
            if resp.status == 401:
                text = await _error_text(resp, "unauthorized: authentication required")  # before release
                if data is not None and not isinstance(data, bytes | str):
                    resp.release()  # a streamed body is spent: it cannot be sent again
                    raise Unauthorized(text)
                try:
                    challenge_ok = await self._authorize(resp)
                finally:
                    resp.release()
                if challenge_ok:
                    continue
                raise Unauthorized(text)
            if resp.status >= 400 and resp.status not in allow:
                text = await _error_text(resp, f"{method} {url}: {resp.status}")
                resp.release()
                if resp.status == 404:
                    raise NotFound(text)
                if resp.status in (401, 403):
                    raise Unauthorized(text)
                raise RegistryError(text)
            return resp
        raise Unauthorized("unauthorized: authentication required")

    async def ping(self) -> None:
        resp = await self.request("GET", "/v2/")
        resp.release()

    async def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest header) of a manifest by tag or digest."""
        resp = await self.request("GET", f"/v2/{self.repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        try:
            raw = await resp.read()
            mt = resp.headers.get("Content-Type", "").split(";")[0]
            return raw, mt, resp.headers.get("Docker-Content-Digest", "")
        finally:
            resp.release()

    async def blob_exists(self, digest: str) -> bool:
        resp = await self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}", allow=(404,))
        resp.release()
        return resp.status == 200

    async def mount(self, digest: str, from_repo: str) -> bool:
        resp = await self.request("POST", f"/v2/{self.repo}/blobs/uploads/",
                                  params={"mount": digest, "from": from_repo}, allow=(404,))
        resp.release()
        return resp.status == 201

    async def upload(self, digest: str, size: int, body: Any) -> None:
        """POST a session, then PUT the whole blob with its digest (monolithic)."""
        resp = await self.request("POST", f"/v2/{self.repo}/blobs/uploads/")
        location = resp.headers.get("Location", "")
        resp.release()
        if not location:
            raise RegistryError("registry did not return an upload location")
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        put = await self.request("PUT", f"{location}{sep}digest={digest}", data=body,
                                 headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        put.release()

    async def put_manifest(self, ref: str, raw: bytes, media_type: str) -> str:
        resp = await self.request("PUT", f"/v2/{self.repo}/manifests/{ref}", data=raw,
                                  headers={"Content-Type": media_type})
        resp.release()
        return resp.headers.get("Docker-Content-Digest", "")


async def _error_text(resp: aiohttp.ClientResponse, default: str) -> str:
    try:
        body = await resp.json(content_type=None)
        errs = body.get("errors") or []
        if errs:
            e = errs[0]
            code = str(e.get("code", "")).lower().replace("_", " ")
            return f"{code}: {e.get('message', '')}".strip(": ")
    except (ValueError, aiohttp.ContentTypeError, AttributeError):
        pass
    return default


def new_session() -> aiohttp.ClientSession:
    """A session for one pull, push, login or inspect: no overall deadline (a big layer takes what it
    takes), but a registry that stops answering is given up on."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300))


def parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        m = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidParameter(f"invalid manifest: {e}") from e
    if not isinstance(m, dict):
        raise InvalidParameter("invalid manifest: not an object")
    return m
