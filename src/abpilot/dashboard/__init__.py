"""The web dashboard's files: ``page.html`` and, under ``static/``, its script, styles and the
vendored Chart.js. ``abpilot.api.routes.dashboard`` serves them at ``/dashboard``; the page reads
the REST API from the browser, so nothing here imports the service."""
