"""The ``abpilot`` command (``abpilot.cli:app``): ``main`` holds the app and the commands of
experiments, bandits and the schema; each capability adds its verbs from its own module
(``contextual``, ``monitoring``, ``transfer``, ``keys``, ``streams``); ``common`` is what they
share."""

from abpilot.cli.main import app

__all__ = ["app"]
