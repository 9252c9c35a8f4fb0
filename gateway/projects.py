"""Projects: the namespaces that images live in, with their style and generation rules."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownProject


@dataclass(frozen=True, slots=True)
class Project:
    slug: str
    style_version: int = 1
    default_style: str = ""
    default_enhance: bool = False
    semantic_reuse: bool = False  # serve a stored image of cosine >= 0.85 before generating


DEMO = Project(slug="demo")


class Projects:
    def __init__(self, projects: list[Project]) -> None:
        self._by_slug = {p.slug: p for p in projects}

    def get(self, slug: str) -> Project:
        project = self._by_slug.get(slug)
        if project is None:
            raise UnknownProject(f"no project named '{slug[:64]}'")
        return project

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_slug.values())
