"""Warehouse-native analysis (issue 20): experiments whose exposures and facts live in the
team's warehouse. abpilot generates one SQL plan with SQLAlchemy Core, runs it there, and brings
back only the sufficient statistics its analysis reads (units, sums, sums of squares).

- ``spec``: sources and an experiment's warehouse settings, checked (pure);
- ``dialects``: the SQL constructs that differ by engine (``@compiles`` overrides);
- ``plan``: the query plan, and its rows read back as ``VariantCounters``;
- ``refresh``: a stored refresh (time, row counts, SQL, totals) as JSON;
- ``engine``: opening the warehouse, describing a source, running a statement with a timeout.

The service part is ``abpilot.service.warehouse``; the faces are ``api/routes/warehouse.py``
and ``cli/warehouse.py``. This package imports no store, service or face.
"""
