"""Pure statistics: summaries of counters, tests, intervals, posteriors."""
