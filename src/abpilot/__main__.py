from abpilot.cli import app

app()
