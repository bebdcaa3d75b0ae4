"""HTTP API served by the Faust worker's aiohttp server: health, metrics, users, segments,
templates and their previews, the unsubscribe link, and the contracts' JSON Schemas."""

from app.api.routes import add_routes
from app.api.services import ApiServices

__all__ = ["ApiServices", "add_routes"]
