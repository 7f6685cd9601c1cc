"""The version of abpilot (``abpilot.__version__``), in a module that imports nothing, so the
client, the service and the app can name it without importing the package root."""

__version__ = "0.1.0"
