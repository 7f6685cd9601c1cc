"""Reliability: crashes, concurrency, store outages and scheduler leadership against the real
`abpilot serve`, on PostgreSQL and on Redis."""
