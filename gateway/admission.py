"""Admission: the one step every request to `/i/` (and the API's routes) passes first.

It resolves the project the request acts in, through a resolver that follows changes made
while the gateway runs. What a project allows (who may ask, what they may make, how much)
is decided here, before anything is parsed, looked up or generated.
"""

from __future__ import annotations

from .projects import Project, Projects


class Admission:
    def __init__(self, projects: Projects) -> None:
        self.projects = projects

    async def live(self, slug: str) -> Project:
        """The project of a live-image request (`/i/{slug}`), or UnknownProject."""
        project = self.projects.peek(slug)
        if project is None:
            project = await self.projects.get(slug)
        return project
