"""Request and response bodies of the REST API (snake_case JSON), a module per capability:
``core`` (experiments, assignment, events, metrics, errors, and the ``Strict`` and ``Lenient``
bases), ``analysis``, ``bandits``, ``contextual``, ``interleaving``, ``monitoring``,
``featurevisor`` (the companion) and ``ofrep`` (flags)."""
