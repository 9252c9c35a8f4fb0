"""Admission: the one step every request to `/i/` and to the API passes first.

It resolves the project the request acts in, through a resolver that follows changes made
anywhere within a second; checks a live URL's signature when the project signs (hits too);
and resolves an API key (or the admin token) to who is calling, with the scope the route
needs. What a generation may then cost is the `Terms` it hands on: checked only when a
generation is about to run, never on a hit.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from promptpix.cache.control import ApiKey, ControlStore, Project

from .clients import Network, client_ip
from .errors import Forbidden, SignatureInvalid, SignatureRequired, Unauthorized
from .generation import Terms
from .params import split_query
from .projects import Projects
from .signing import SIG, verify
from .spending import Spending

MAX_CACHED = 10_000  # verified URLs and resolved keys remembered; past that, all forgotten
Headers = Iterable[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API: the admin (token), or a project's key."""

    admin: bool = False
    key: ApiKey | None = None


ANONYMOUS = Principal()


def presented_key(headers: Headers) -> str:
    """The key of `Authorization: Bearer KEY` or `X-API-Key: KEY`, or ""."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return ""


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class Admission:
    def __init__(
        self,
        projects: Projects,
        store: ControlStore,
        spending: Spending,
        *,
        admin_token: str = "",
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.projects = projects
        self.store = store
        self.spending = spending
        # Only its digest is kept, and compared in constant time.
        self._admin = _digest(admin_token) if admin_token else None
        self.trusted_proxies = trusted_proxies
        self._verified: dict[tuple[str, bytes], Project] = {}
        self._keys: dict[bytes, tuple[int, ApiKey | None]] = {}

    # --- live images -------------------------------------------------------------------

    async def live(
        self, slug: str, path: str, query: bytes
    ) -> tuple[Project, dict[str, str] | None]:
        """The project of `/i/{slug}` (or UnknownProject) and, when it signs, the decoded
        parameters its signature was checked over."""
        project = self.projects.peek(slug)
        if project is None:
            project = await self.projects.get(slug)
        if project.signing == "off":
            return project, None
        if self._verified.get((path, query)) is project:  # this very URL, for this project
            return project, None
        params = split_query(query)
        if SIG not in params:
            raise SignatureRequired(f"project '{slug}' accepts signed URLs only", param=SIG)
        if not verify(project.secrets, path, params, project.signing):
            raise SignatureInvalid("the signature does not match this URL", param=SIG)
        if len(self._verified) >= MAX_CACHED:
            self._verified.clear()
        self._verified[(path, query)] = project
        return project, params

    def terms(self, project: Project, peer: str, headers: Headers) -> Terms:
        """What a generation for this request may cost, charged to `project` and counted
        against the client's rate limit."""
        client = peer
        if self.trusted_proxies:  # else X-Forwarded-For is the client's own word: ignored
            forwarded = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-for"]
            client = client_ip(peer, forwarded, self.trusted_proxies)
        return Terms(
            charge=self.spending.charge(project, client),
            among=project.generators,
            stand_in=project.on_failure == "placeholder",
            system_prompt=project.system_prompt,
        )

    # --- the API -----------------------------------------------------------------------

    def is_admin(self, token: str) -> bool:
        return (
            self._admin is not None
            and bool(token)
            and hmac.compare_digest(_digest(token), self._admin)
        )

    async def api(
        self, headers: Headers, auth: str, scope: str | None, slug: str | None
    ) -> Principal:
        """Who calls a route that needs `auth` (`admin`, `key`, `admin_or_key`, `public`),
        the key's `scope`, and, for a project's route, that project (`slug`)."""
        if auth == "public":
            return ANONYMOUS
        token = presented_key(headers)
        if auth != "key" and self.is_admin(token):
            return Principal(admin=True)
        if auth == "admin":
            if self._admin is None:
                raise Forbidden(
                    "the admin API is off: set PROMPTPIX_ADMIN_TOKEN, or manage projects with "
                    "the promptpix CLI"
                )
            if not token or not token.startswith("ppk_"):
                raise Unauthorized("this route needs the admin token")
            raise Forbidden("this route needs the admin token, not a project's key")
        if not token:
            raise Unauthorized("an API key is needed: Authorization: Bearer KEY or X-API-Key")
        key = await self.key(token)
        if key is None:
            raise Unauthorized("unknown or revoked API key")
        if slug is not None and key.project != slug:
            raise Forbidden("this key belongs to another project")
        if scope is not None and scope not in key.scopes:
            raise Forbidden(f"this key does not have the '{scope}' scope", param=scope)
        return Principal(key=key)

    async def key(self, token: str) -> ApiKey | None:
        """The key `token` is, cached until the control store changes (a revoked key fails
        everywhere within the resolver's refresh)."""
        digest = _digest(token)
        generation = self.projects.generation
        found = self._keys.get(digest)
        if found is not None and found[0] == generation:
            return found[1]
        key = await self.store.find_key(token)
        if len(self._keys) >= MAX_CACHED:
            self._keys.clear()
        self._keys[digest] = (generation, key)
        return key
