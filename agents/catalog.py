"""Every agent CryptIQ can run, by name: what `cryptiq agent NAME` and `cryptiq run` look up.

Two kinds: stream agents consume topics and run in `AgentHost`; source agents (no `consumes`)
read files or exchanges and run in `SourceHost`.
"""

from __future__ import annotations

from agents.alert_orchestrator import AlertOrchestratorAgent
from agents.base import Agent
from agents.echo import EchoAgent
from agents.execution import ExecutionAgent
from agents.market_data.agent import MarketDataAgent
from agents.orchestrator import OrchestratorAgent
from agents.risk import RiskAgent
from agents.scanner import ScannerAgent
from agents.technical import TechnicalAgent
from config import CryptiqError

AGENTS: dict[str, type] = {
    cls.name: cls
    for cls in (MarketDataAgent, ScannerAgent, TechnicalAgent, OrchestratorAgent, AlertOrchestratorAgent,
                RiskAgent, ExecutionAgent, EchoAgent)
}


class UnknownAgentError(CryptiqError):
    """No agent has that name."""


def agent_class(name: str) -> type:
    """The agent class called `name`; UnknownAgentError listing the known names otherwise."""
    try:
        return AGENTS[name]
    except KeyError:
        known = ", ".join(sorted(AGENTS))
        raise UnknownAgentError(f"unknown agent {name!r}; known agents: {known}") from None


def is_source(cls: type) -> bool:
    """True for agents that consume no topic (they run in a SourceHost)."""
    return not getattr(cls, "consumes", ())


__all__ = ["AGENTS", "Agent", "UnknownAgentError", "agent_class", "is_source"]
