"""The health of a warehouse experiment's refreshes (issue 20): its analysis reads the latest
refresh, so a failed refresh or one older than twice the refresh interval means the checks
beside it (SRM, guardrails, ...) judge old data. It stands in for the ``stale`` check of an
experiment fed by events (a warehouse experiment takes none)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from abpilot.monitoring.checks import Check, Status

NAME = "warehouse_refresh"
STALE_INTERVALS = 2  # a refresh older than this many refresh intervals is stale


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _minutes(value: float) -> str:
    return f"{value:.0f} minutes" if value >= 10 else f"{value:.1f} minutes"


def refresh_check(
    *,
    refreshed_at: datetime | None,
    failed_at: datetime | None,
    failure: str | None,
    running_since: datetime | None,
    now: datetime,
    refresh_minutes: float,
) -> Check:
    """An alert when the latest refresh failed (``failed_at``, with its reason ``failure``), or
    when the latest successful one (``refreshed_at``; the experiment's ``running_since`` before
    the first) is older than ``STALE_INTERVALS`` times ``refresh_minutes``; else OK."""
    limit = STALE_INTERVALS * refresh_minutes
    figures: dict[str, Any] = {
        "refreshed_at": None if refreshed_at is None else refreshed_at.isoformat(),
        "failed_at": None if failed_at is None else failed_at.isoformat(),
        "failure": failure,
        "refresh_minutes": refresh_minutes,
        "stale_after_minutes": limit,
    }
    kept = (
        f"the analysis reads the refresh of {_at(refreshed_at)}"
        if refreshed_at is not None
        else "there is no refresh to analyse yet"
    )
    if failed_at is not None:
        return Check(
            NAME,
            Status.ALERT,
            f"The latest warehouse refresh failed at {_at(failed_at)}: "
            f"{(failure or 'no reason given').rstrip('.')}; {kept}.",
            figures,
        )
    since = refreshed_at if refreshed_at is not None else running_since
    if since is None:
        figures["minutes_since"] = None
        return Check(NAME, Status.OK, "The experiment is not running yet.", figures)
    minutes = (now - since).total_seconds() / 60
    figures["minutes_since"] = round(minutes, 3)
    if minutes > limit:
        what = (
            f"The latest warehouse refresh is {_minutes(minutes)} old"
            if refreshed_at is not None
            else "No warehouse refresh since the experiment started running "
            f"{_minutes(minutes)} ago"
        )
        return Check(
            NAME,
            Status.ALERT,
            f"{what} (refreshes run every {_minutes(refresh_minutes)}; alert after "
            f"{_minutes(limit)}); {kept}.",
            figures,
        )
    if refreshed_at is None:
        return Check(NAME, Status.OK, "No warehouse refresh yet.", figures)
    return Check(
        NAME, Status.OK, f"The latest warehouse refresh is {_minutes(minutes)} old.", figures
    )
