"""The ops API and dashboard (FastAPI): live state, decisions and their flow, metrics, operator commands.

`create_app(settings, endpoints)` builds the app; `ApiServer` / `serve` host it in a running
event loop (`cryptiq api`, and `cryptiq run` next to the agents).
"""

from orchestrator.api.app import create_app
from orchestrator.api.server import ApiServer, serve

__all__ = ["ApiServer", "create_app", "serve"]
