"""pytest plugin: deterministic lock tests on PostgreSQL, without sleeps or luck.

A lock test holds a lock from a connection of its own and watches the path under test *wait* for
it (or *skip* it) in PostgreSQL's own bookkeeping (``pg_stat_activity``, ``pg_blocking_pids``),
then releases it and checks that the path finished right. Nothing is inferred from timing: the
path is seen blocked by the holder's backend, at the statement that takes the lock, or seen to
finish while the lock is still held.

Fixture ``contention`` (function; needs ``django_db(transaction=True)``: every thread has its own
connection and sees only committed rows):

- ``contention.hold(work)``: a :class:`Holder`, an open transaction in a thread of its own with
  ``work`` run inside it (take the lock there); ``holder.run(more)`` runs more in the same
  transaction; leaving its ``with`` block (or the test) commits it.
- ``contention.start(work)``: a :class:`Contender`, ``work`` run in a thread of its own.
  ``wait_until_blocked(holder, at="SELECT")`` returns once the contender waits for the holder's
  lock at a statement starting with ``at`` (PostgreSQL only blocks a plain ``SELECT`` for a row
  lock when it locks rows itself: ``FOR UPDATE``), and fails as soon as it finishes without
  waiting or waits elsewhere. ``finishes_while_held()`` fails as soon as it waits for a lock.
  ``outcome()`` is its return value (or raises its exception).

The fixture commits every holder and joins every contender before the test's database is flushed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import pytest
from django.db import connection, transaction

_T = TypeVar("_T")

# Generous: a loaded 2-core machine may take seconds to start a thread's first query.
OBSERVE_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.002


class _Backend:
    """A thread with a database connection of its own; ``pid`` is its PostgreSQL backend's."""

    def __init__(self, name: str) -> None:
        self._pid: Future[int] = Future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self.pid = self._pid.result(timeout=OBSERVE_TIMEOUT_SECONDS)

    def _main(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._pid.set_result(cursor.fetchone()[0])
            self._body()
        except BaseException as error:
            if self._pid.done():
                raise  # the thread's own failure: pytest reports it
            self._pid.set_exception(error)  # no connection: raised by the constructor
        finally:
            connection.close()

    def _body(self) -> None:
        raise NotImplementedError

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)


class Holder(_Backend):
    """An open transaction in its own thread and connection; committed by :meth:`release`."""

    def __init__(self, *, name: str = "holder") -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        super().__init__(name)

    def _body(self) -> None:
        with transaction.atomic():
            while (job := self._jobs.get()) is not None:
                work, result = job
                try:
                    with transaction.atomic():  # a failing job leaves the transaction usable
                        result.set_result(work())
                except BaseException as error:  # handed to the caller of run()
                    result.set_exception(error)

    def run(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` inside the held transaction; its return value, or its exception."""
        result: Future[_T] = Future()
        self._jobs.put((work, result))
        return result.result(timeout=120)

    def release(self) -> None:
        """Commit the transaction (every lock it took is released); idempotent."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self.join(timeout=60)

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Contender(_Backend, Generic[_T]):
    """The path under test, in its own thread and connection (its own backend pid)."""

    def __init__(self, work: Callable[[], _T], *, name: str = "contender") -> None:
        self._work = work
        self._outcome: Future[_T] = Future()
        super().__init__(name)

    def _body(self) -> None:
        try:
            self._outcome.set_result(self._work())
        except BaseException as error:  # handed to outcome()
            self._outcome.set_exception(error)

    @property
    def finished(self) -> bool:
        return self._outcome.done()

    def _lock_wait(self, holder: Holder | None) -> tuple[str, bool] | None:
        """``(statement, blocked by the holder)`` while the contender waits for a lock."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh even inside a transaction
            cursor.execute(
                "SELECT query, %s = ANY(pg_blocking_pids(pid)) FROM pg_stat_activity "
                "WHERE pid = %s AND wait_event_type = 'Lock'",
                [holder.pid if holder is not None else 0, self.pid],
            )
            row = cursor.fetchone()
        return (str(row[0]), bool(row[1])) if row is not None else None

    def _describe(self) -> str:
        if not self.finished:
            return "still running"
        error = self._outcome.exception()
        return f"raised {error!r}" if error is not None else f"returned {self._outcome.result()!r}"

    def wait_until_blocked(self, holder: Holder, *, at: str) -> None:
        """Return once the contender waits for ``holder``'s lock in a statement starting ``at``."""
        deadline = time.monotonic() + OBSERVE_TIMEOUT_SECONDS
        while (waiting := self._lock_wait(holder)) is None:
            if self.finished:
                raise AssertionError(
                    f"finished without waiting for the held lock ({self._describe()})"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"never seen waiting for the held lock ({self._describe()})")
            time.sleep(_POLL_SECONDS)
        statement, blocked_by_holder = waiting
        if not blocked_by_holder:
            raise AssertionError(f"waits for another backend's lock, at: {statement[:120]}")
        if not statement.lstrip().upper().startswith(at.upper()):
            raise AssertionError(
                f"waited for the held lock at the wrong statement: {statement[:120]}"
            )

    def finishes_while_held(self) -> None:
        """Return once the contender finished; fail as soon as it waits for any lock."""
        deadline = time.monotonic() + OBSERVE_TIMEOUT_SECONDS
        while not self.finished:
            waiting = self._lock_wait(None)
            if waiting is not None:
                raise AssertionError(f"waited for a lock instead of skipping: {waiting[0][:120]}")
            if time.monotonic() > deadline:
                raise AssertionError("did not finish")
            time.sleep(_POLL_SECONDS)

    def outcome(self, timeout: float = 120) -> _T:
        """What the work returned (its exception is raised here)."""
        return self._outcome.result(timeout=timeout)


class Contention:
    """What the ``contention`` fixture hands a test: holders and contenders, cleaned up after."""

    def __init__(self) -> None:
        self._holders: list[Holder] = []
        self._contenders: list[Contender[Any]] = []

    def hold(self, work: Callable[[], object]) -> Holder:
        holder = Holder(name=f"lock-holder-{len(self._holders)}")
        self._holders.append(holder)
        holder.run(work)
        return holder

    def start(self, work: Callable[[], _T]) -> Contender[_T]:
        contender = Contender(work, name=f"lock-contender-{len(self._contenders)}")
        self._contenders.append(contender)
        return contender

    def close(self) -> None:
        for holder in self._holders:
            holder.release()
        for contender in self._contenders:
            contender.join(timeout=120)


@pytest.fixture
def contention(transactional_db: None) -> Iterator[Contention]:
    """Holders and contenders for a lock test; all ended before the database is flushed."""
    lab = Contention()
    try:
        yield lab
    finally:
        lab.close()
