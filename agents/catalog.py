"""Every agent CryptIQ can run, by name: what `cryptiq agent NAME` and `cryptiq run` look up."""

from __future__ import annotations

from agents.base import Agent
from agents.echo import EchoAgent
from config import CryptiqError

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (EchoAgent,)}


class UnknownAgentError(CryptiqError):
    """No agent has that name."""


def agent_class(name: str) -> type[Agent]:
    """The agent class called `name`; UnknownAgentError listing the known names otherwise."""
    try:
        return AGENTS[name]
    except KeyError:
        known = ", ".join(sorted(AGENTS))
        raise UnknownAgentError(f"unknown agent {name!r}; known agents: {known}") from None
