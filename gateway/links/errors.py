"""Errors of the broker links that are the operator's to fix."""

from __future__ import annotations


class LinkMisconfigured(ValueError):
    """The link's settings cannot be used; the message names the setting and what to do."""
