"""Pure bandit logic: Thompson-sampling allocation, windows for daily data."""
