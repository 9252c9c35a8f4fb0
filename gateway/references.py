"""Reference images named by a request, resolved to the content keys an original's key
covers: `@alias` in a prompt or in `references`, an asset's id, and inside a flow `@last`
(its newest output) and `@first` (its first).

An alias is looked up at most once a second per process: moving it takes effect within a
second everywhere, and a page full of `@logo` URLs costs one query a second, not one each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from promptpix.cache.keys import is_key
from promptpix.cache.library import ALIAS, Library

from .errors import BadParameter, UnknownAsset

MAX_REFERENCES = 3
# `@name` as a word of its own: not the middle of an e-mail address or a URL.
MENTION = re.compile(r"(?<![\w.@/])@([a-z0-9][a-z0-9_-]{0,63})(?![\w-])")
FLOW_NAMES = ("last", "first")
ALIAS_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class FlowOutputs:
    """A flow's outputs so far, as the originals' keys."""

    first: str | None = None
    last: str | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    keys: tuple[str, ...] = ()  # the content keys, in the order named, each once
    aliases: tuple[str, ...] = ()  # the assets' aliases named (history filters on them)


NONE = Resolved()


def mentions(prompt: str) -> list[str]:
    """The `@names` a prompt makes, in order."""
    return MENTION.findall(prompt) if "@" in prompt else []


class References:
    def __init__(self, library: Library, ttl_s: float = ALIAS_TTL_S) -> None:
        self.library = library
        self._aliases: TTLCache[tuple[str, str], str | None] = TTLCache(10_000, ttl_s)

    async def resolve(
        self,
        project: str,
        prompt: str,
        given: Sequence[str] = (),
        flow: FlowOutputs | None = None,
    ) -> Resolved:
        """The references of `prompt`'s mentions, then of `given`. An unknown alias or id:
        404 `unknown_asset`; more than three: 400."""
        named = [f"@{m}" for m in mentions(prompt)]
        if not named and not given:
            return NONE
        keys: list[str] = []
        aliases: list[str] = []
        for entry in (*named, *given):
            key = await self._one(project, entry, flow, aliases)
            if key not in keys:
                keys.append(key)
        if len(keys) > MAX_REFERENCES:
            raise BadParameter(
                f"at most {MAX_REFERENCES} reference images; this request names {len(keys)}",
                param="references",
            )
        return Resolved(tuple(keys), tuple(aliases))

    async def _one(
        self, project: str, entry: str, flow: FlowOutputs | None, aliases: list[str]
    ) -> str:
        if entry.startswith("@"):
            name = entry[1:]
            if flow is not None and name in FLOW_NAMES:
                key = flow.last if name == "last" else flow.first
                if key is None:
                    raise BadParameter(
                        f"'{entry}' names the flow's {name} output, and it has none yet",
                        param="references",
                    )
                return key
            if not ALIAS.match(name):
                raise BadParameter(f"'{entry[:70]}' is not an alias", param="references")
            found = await self.alias(project, name)
            if found is None:
                raise UnknownAsset(f"no asset is named @{name} in this project", param="references")
            if name not in aliases:
                aliases.append(name)
            return found
        if is_key(entry):
            if await self.library.asset(project, entry) is None:
                raise UnknownAsset(f"no asset {entry} in this project", param="references")
            return entry
        raise BadParameter(f"'{entry[:70]}' is neither @alias nor an asset id", param="references")

    async def alias(self, project: str, alias: str) -> str | None:
        """The id of the asset `alias` names now (within a second)."""
        cache_key = (project, alias)
        if cache_key in self._aliases:
            return self._aliases[cache_key]
        asset = await self.library.asset_by_alias(project, alias)
        found = asset.id if asset is not None else None
        self._aliases[cache_key] = found
        return found
