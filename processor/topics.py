"""MQTT topic templates such as `{cp_id}/in`: subscription filters and charge point ids."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

PLACEHOLDER = "{cp_id}"


@dataclass(frozen=True)
class TopicTemplate:
    """A topic with `{cp_id}` as one whole level, e.g. `{cp_id}/in` or `ocpp/{cp_id}/state`."""

    template: str

    def __post_init__(self) -> None:
        problem = template_problem(self.template)
        if problem is not None:
            raise ValueError(problem)

    def topic(self, cp_id: str) -> str:
        return self.template.replace(PLACEHOLDER, cp_id)

    @property
    def filter(self) -> str:
        """The subscription filter matching every charge point's topic."""
        return self.template.replace(PLACEHOLDER, "+")

    def shared_filter(self, group: str) -> str:
        """The filter as an MQTT 5 shared subscription (`$share/<group>/…`) when a group is set."""
        return f"$share/{group}/{self.filter}" if group else self.filter

    def cp_id(self, topic: str) -> str | None:
        """The charge point id in `topic`, or None when the topic does not fit the template."""
        match = _pattern(self.template).fullmatch(topic)
        return match.group(1) if match else None


def template_problem(template: str) -> str | None:
    """Why `template` cannot be used, or None when it is fine."""
    levels = template.split("/")
    if levels.count(PLACEHOLDER) != 1 or template.count(PLACEHOLDER) != 1:
        return f"the topic template {template!r} must contain {PLACEHOLDER} once, as a whole level"
    if any(wildcard in template for wildcard in ("+", "#")):
        return f"the topic template {template!r} must not contain MQTT wildcards (+ or #)"
    if template.startswith("$"):
        return f"the topic template {template!r} must not start with $ (reserved by the broker)"
    return None


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    before, after = template.split(PLACEHOLDER)
    return re.compile(re.escape(before) + "([^/]+)" + re.escape(after))
