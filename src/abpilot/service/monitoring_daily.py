"""The daily monitoring run: once a day at ``MONITOR_AT`` (UTC) on the one leader, keep the
report in the store (the newest ``MONITOR_KEEP``) and, when an experiment is in alert, POST the
report to ``MONITOR_WEBHOOK_URL``.

``DailyMonitor.run_if_due`` is the job of a ``Scheduler`` (leadership by the store's lease), which
calls it every minute or so; it runs only when today's time has come and no report has been
kept since, so a new leader (or a restart) neither repeats a day's run nor misses one: a run
missed at 09:00 happens at the first call after it. The webhook gets 3 attempts with
exponential backoff; a failure is logged, never raised.
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time
from typing import Any

import httpx

from abpilot.monitoring.checks import Status
from abpilot.service.monitoring import (
    DEFAULT_DAYS,
    NAMESPACE,
    REPORT_PREFIX,
    Monitor,
    Report,
    report_to_dict,
)

log = logging.getLogger("abpilot.monitoring")
RETRYABLE_STATUS = frozenset({408, 429})


def parse_time_of_day(text: str) -> time:
    """``HH:MM`` (UTC) as a time."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes), tzinfo=UTC)


def alert_payload(report: Report) -> dict[str, Any]:
    """The webhook's JSON: a one-line ``text`` (chat webhooks show it) and the whole report."""
    alerts = [e for e in report.experiments if e.status is Status.ALERT]
    names = "; ".join(
        f"{e.key} ({', '.join(c.name for c in e.checks if c.status is Status.ALERT)})"
        for e in alerts
    )
    return {
        "text": f"abpilot monitoring: {len(alerts)} experiment(s) in alert: {names}",
        "report": report_to_dict(report),
    }


def post_alert(
    url: str,
    payload: Mapping[str, Any],
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 10.0,
    sleep: Callable[[float], None] = clock.sleep,
) -> bool:
    """POST ``payload`` as JSON; retry network errors, 5xx, 408 and 429, waiting
    ``backoff_seconds`` then twice as long each time. True once a 2xx answers; failures are
    logged (with the host only: webhook URLs often hold a token), never raised."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError) as error:
        log.error("monitoring alert not sent: the webhook URL is invalid (%s)", error)
        return False
    problem = "not attempted"
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=dict(payload), timeout=timeout_seconds)
        except httpx.HTTPError as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if response.is_success:
                log.info("monitoring alert delivered to %s (attempt %d)", host, attempt)
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                log.error("monitoring alert refused by %s (%s); not retried", host, problem)
                return False
        if attempt < attempts:
            wait = backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "monitoring alert to %s failed (%s), attempt %d of %d; retrying in %.1f s",
                host,
                problem,
                attempt,
                attempts,
                wait,
            )
            sleep(wait)
    log.error("monitoring alert to %s failed after %d attempts (%s)", host, attempts, problem)
    return False


class DailyMonitor:
    def __init__(
        self,
        monitor: Monitor,
        *,
        at: time = time(9, 0, tzinfo=UTC),
        keep: int = 30,
        webhook_url: str | None = None,
        days: int = DEFAULT_DAYS,
        attempts: int = 3,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.monitor = monitor
        self.at = at.replace(tzinfo=UTC)
        self.keep, self.days = keep, days
        self.webhook_url = webhook_url
        self.attempts, self.backoff_seconds = attempts, backoff_seconds
        self.runs = 0
        self._last_run: datetime | None = None  # known from this process; the store decides

    def due(self, now: datetime) -> bool:
        """True at or after today's ``at`` (UTC) when no report has been kept since."""
        now = now.astimezone(UTC)
        today = datetime.combine(now.date(), self.at)
        if now < today or (self._last_run is not None and self._last_run >= today):
            return False
        self._last_run = self._latest_kept()
        return self._last_run is None or self._last_run < today

    def run_if_due(self) -> Report | None:
        """The scheduler's job: the report when one was made now, else None. Never raises (the
        scheduler thread must live on); failures are logged."""
        try:
            now = self.monitor.lookup.clock()
            if not self.due(now):
                return None
            report = self.monitor.report(days=self.days)
            self.monitor.keep(report, keep=self.keep)
            self._last_run = report.generated_at.astimezone(UTC)
            self.runs += 1
            log.info(
                "monitoring report: %s",
                ", ".join(f"{n} {status}" for status, n in report.counts.items()),
            )
            if report.status is Status.ALERT and self.webhook_url:
                post_alert(
                    self.webhook_url,
                    alert_payload(report),
                    attempts=self.attempts,
                    backoff_seconds=self.backoff_seconds,
                )
            return report
        except Exception:  # the scheduler thread must survive; the next day may succeed
            log.exception("the daily monitoring run failed")
            return None

    def _latest_kept(self) -> datetime | None:
        kept = [
            d.updated_at
            for d in self.monitor.store.list_documents(NAMESPACE)
            if d.key.startswith(REPORT_PREFIX)
        ]
        return max(kept, default=None)
