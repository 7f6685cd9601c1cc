"""The REST face: ``create_app(settings)``."""

from abpilot.api.app import create_app

__all__ = ["create_app"]
