"""Contextual bandits for the SQL store: the decision log, feedback, and per-context arm states.

Each operation is one transaction. State counters change only by
``INSERT .. ON CONFLICT DO UPDATE SET n = bandit_states.n + excluded.n``, two rows at a time
((context, arm) and (``GLOBAL_CONTEXT``, arm)) sorted by key, so concurrent transactions on
PostgreSQL lock rows in the same order. Feedback is claimed with
``INSERT .. ON CONFLICT DO NOTHING RETURNING``: of concurrent claims of one (decision, event),
exactly one gets its row back (the others wait for it to commit, then see the conflict), and
only that one goes on to count.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from abpilot.domain.errors import DuplicateKey, NotFound
from abpilot.store.base import (
    GLOBAL_CONTEXT,
    ArmState,
    Decision,
    FeedbackOutcome,
    check_context_key,
)
from abpilot.store.codec import as_utc
from abpilot.store.sql.common import adding_upsert, guarded
from abpilot.store.sql.schema import bandit_states, decision_feedback, decisions

_STATE_COUNTERS = ("pulls", "successes", "failures")
# The decision and state column each counted outcome adds 1 to; NEUTRAL adds to none.
_COUNTED = {FeedbackOutcome.SUCCESS: "successes", FeedbackOutcome.FAILURE: "failures"}


@functools.cache
def _count_statement(dialect: str) -> sa.Insert:
    """Add the row's counts to a (context, arm) state; the row's ``updated_at`` replaces it."""
    keys = ("experiment_id", "context_key", "arm")
    also = {"updated_at": lambda excluded: excluded.updated_at}
    return adding_upsert(dialect, bandit_states, keys, _STATE_COUNTERS, also)


class SqlContextual:
    """Mixed into ``SqlStore``: needs ``engine``, ``_insert`` and ``_write``."""

    engine: sa.Engine
    _insert: Any
    _write: Callable[[], AbstractContextManager[sa.Connection]]

    @guarded
    def record_decision(self, decision: Decision) -> None:
        check_context_key(decision)
        moment = as_utc(decision.decided_at)  # SQLite keeps no time zone: write UTC
        stmt = (
            self._insert(decisions)
            .values(
                experiment_id=decision.experiment_id,
                id=decision.id,
                unit_id=decision.unit_id,
                context_key=decision.context_key,
                context=_context_json(decision.context),
                arm=decision.arm,
                propensity=decision.propensity,
                policy=decision.policy,
                method=decision.method,
                decided_at=moment,
                successes=0,
                failures=0,
            )
            .on_conflict_do_nothing()
            .returning(decisions.c.id)
        )
        with self._write() as conn, conn.begin():
            if conn.execute(stmt).first() is None:
                raise DuplicateKey(
                    f"decision '{decision.id}' already exists in experiment "
                    f"{decision.experiment_id}",
                    field="id",
                )
            self._count_arm(
                conn, decision.experiment_id, decision.context_key, decision.arm, "pulls", moment
            )

    @guarded
    def get_decision(self, experiment_id: str, decision_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            query = sa.select(decisions).where(_the(experiment_id, decision_id))
            row = conn.execute(query).mappings().first()
            return None if row is None else _decision(row)

    @guarded
    def apply_feedback(
        self,
        experiment_id: str,
        decision_id: str,
        event: str,
        outcome: FeedbackOutcome,
        at: datetime,
        rating: float | None = None,
    ) -> bool:
        moment = as_utc(at)
        claim = (
            self._insert(decision_feedback)
            .values(
                experiment_id=experiment_id,
                decision_id=decision_id,
                event=event,
                outcome=outcome.value,
                received_at=moment,
            )
            .on_conflict_do_nothing()
            .returning(decision_feedback.c.event)
        )
        with self._write() as conn, conn.begin():
            found = conn.execute(
                sa.select(decisions.c.context_key, decisions.c.arm).where(
                    _the(experiment_id, decision_id)
                )
            ).first()
            if found is None:
                raise NotFound(
                    f"decision '{decision_id}' does not exist in experiment {experiment_id}",
                    field="decision_id",
                )
            if conn.execute(claim).first() is None:
                return False  # this (decision, event) was applied before
            counter = _COUNTED.get(outcome)
            changes: dict[Any, Any] = {} if rating is None else {"rating": float(rating)}
            if counter is not None:
                changes[counter] = decisions.c[counter] + 1
            if changes:
                conn.execute(
                    decisions.update().where(_the(experiment_id, decision_id)).values(changes)
                )
            if counter is not None:
                self._count_arm(conn, experiment_id, found.context_key, found.arm, counter, moment)
            return True

    @guarded
    def get_bandit_states(self, experiment_id: str) -> list[ArmState]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(bandit_states).where(bandit_states.c.experiment_id == experiment_id)
            ).mappings()
            found = [
                ArmState(
                    context_key=r["context_key"],
                    arm=r["arm"],
                    pulls=int(r["pulls"]),
                    successes=int(r["successes"]),
                    failures=int(r["failures"]),
                    updated_at=None if r["updated_at"] is None else as_utc(r["updated_at"]),
                )
                for r in rows
            ]
        # Sorted here, not by ORDER BY: a database collation may not be code point order.
        return sorted(found, key=lambda s: (s.context_key, s.arm))

    @guarded
    def list_decisions(self, experiment_id: str, since: datetime | None = None) -> list[Decision]:
        query = sa.select(decisions).where(decisions.c.experiment_id == experiment_id)
        if since is not None:
            query = query.where(decisions.c.decided_at >= as_utc(since))
        with self.engine.connect() as conn:
            found = [_decision(r) for r in conn.execute(query).mappings()]
        return sorted(found, key=lambda d: (d.decided_at, d.id))

    @guarded
    def latest_unit_decision(self, experiment_id: str, unit_id: str) -> Decision | None:
        # The unit's decisions at its latest time, by the (experiment_id, unit_id, decided_at)
        # index; of equal times the greatest id in code point order (a collation may differ).
        mine = sa.and_(decisions.c.experiment_id == experiment_id, decisions.c.unit_id == unit_id)
        latest = sa.select(sa.func.max(decisions.c.decided_at)).where(mine).scalar_subquery()
        query = sa.select(decisions).where(mine, decisions.c.decided_at == latest)
        with self.engine.connect() as conn:
            found = [_decision(r) for r in conn.execute(query).mappings()]
        return max(found, key=lambda d: d.id, default=None)

    @guarded
    def list_feedback(self, experiment_id: str) -> list[tuple[str, str]]:
        query = sa.select(decision_feedback.c.decision_id, decision_feedback.c.event).where(
            decision_feedback.c.experiment_id == experiment_id
        )
        with self.engine.connect() as conn:
            return sorted((str(r[0]), str(r[1])) for r in conn.execute(query))

    def _count_arm(
        self,
        conn: sa.Connection,
        experiment_id: str,
        context_key: str,
        arm: str,
        counter: str,
        at: datetime,
    ) -> None:
        """Add 1 to ``counter`` of ``arm`` in ``context_key`` and in ``GLOBAL_CONTEXT``."""
        values = [
            {
                "experiment_id": experiment_id,
                "context_key": context,
                "arm": arm,
                **{n: int(n == counter) for n in _STATE_COUNTERS},
                "updated_at": at,
            }
            for context in sorted((context_key, GLOBAL_CONTEXT))
        ]
        conn.execute(_count_statement(self.engine.dialect.name), values)


def _context_json(context: Mapping[str, str]) -> str:
    return json.dumps(dict(context), ensure_ascii=False, separators=(",", ":"))


def _the(experiment_id: str, decision_id: str) -> sa.ColumnElement[bool]:
    """The condition selecting one decision."""
    return sa.and_(decisions.c.experiment_id == experiment_id, decisions.c.id == decision_id)


def _decision(row: Any) -> Decision:
    return Decision(
        id=row["id"],
        experiment_id=row["experiment_id"],
        unit_id=row["unit_id"],
        context_key=row["context_key"],
        context=json.loads(row["context"]),
        arm=row["arm"],
        propensity=float(row["propensity"]),
        policy=row["policy"],
        method=row["method"],
        decided_at=as_utc(row["decided_at"]),
        successes=int(row["successes"]),
        failures=int(row["failures"]),
        rating=None if row["rating"] is None else float(row["rating"]),
    )
