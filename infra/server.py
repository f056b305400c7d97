"""`EmbeddedServer`: what the manager needs from each server it can start (Tansu, Redis, Postgres)."""

from __future__ import annotations

from typing import Protocol

from infra.process import Launch
from infra.state import ServiceRecord


class EmbeddedServer(Protocol):
    """One kind of embedded server. Implementations hold their settings; the manager owns state."""

    name: str
    start_timeout_s: float

    def prepare(self) -> None:
        """Check the binary and make data directories ready; raise an `InfraError` saying what to do."""

    def launch(self, port: int) -> Launch:
        """The command that serves on 127.0.0.1:`port`."""

    def url(self, port: int) -> str:
        """What clients connect to once the server listens on `port`."""

    async def probe(self, url: str, timeout_s: float) -> None:
        """Return once the server answers a real request; raise if it does not."""

    async def finish(self, url: str) -> None:
        """Work to do once the server answers (create a database...); may be nothing."""

    def stop(self, record: ServiceRecord, timeout_s: float) -> bool:
        """Stop the recorded server cleanly; False if it was not running."""
