"""workers.enqueue.Batcher: submits return at once; what arrives during a flush shares the next.

Real threads, no fakes: the flush function records its batches, and can be held (an Event) so
that items arrive while it runs, as events do while the publisher thread talks to the broker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest

from workers.enqueue import Batcher

WAIT = 10.0


class Recorder:
    """A flush that records each batch and the thread that ran it; ``hold`` blocks until
    ``release`` is set; ``fail_first`` raises on the first batch."""

    def __init__(self, *, hold: bool = False, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_first = fail_first

    def __call__(self, batch: list[int]) -> None:
        self.batches.append(list(batch))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        assert self.release.wait(WAIT)
        if self.fail_first and len(self.batches) == 1:
            raise RuntimeError("broker went away")


def test_a_lone_item_is_flushed_alone_by_the_batchers_thread() -> None:
    flush = Recorder()
    batcher = Batcher(flush, name="test-batcher")
    batcher.submit(1)
    assert batcher.drain(WAIT)
    batcher.submit(2)
    assert batcher.drain(WAIT)
    assert flush.batches == [[1], [2]]
    assert flush.threads == {"test-batcher"}


def test_submit_does_not_wait_for_the_flush_and_items_meanwhile_share_the_next() -> None:
    flush = Recorder(hold=True)
    batcher = Batcher(flush, name="test-batcher")
    batcher.submit(1)
    assert flush.entered.wait(WAIT)
    started = time.monotonic()
    for item in (2, 3, 4):
        batcher.submit(item)  # the flush of [1] is still held: these must not wait for it
    assert time.monotonic() - started < 1.0
    assert not batcher.drain(0.05)  # still busy
    flush.release.set()
    assert batcher.drain(WAIT)
    assert flush.batches == [[1], [2, 3, 4]]


def test_a_failing_flush_is_logged_and_the_thread_goes_on(caplog: Any) -> None:
    flush = Recorder(fail_first=True)
    batcher = Batcher(flush, name="test-batcher")
    with caplog.at_level(logging.ERROR, logger="workers.enqueue"):
        batcher.submit(1)
        assert batcher.drain(WAIT)
    assert "flushing 1 queued item(s) failed" in caplog.text
    batcher.submit(2)
    assert batcher.drain(WAIT)
    assert flush.batches == [[1], [2]]


def test_every_item_is_flushed_exactly_once_under_contention() -> None:
    lock = threading.Lock()
    seen: list[int] = []
    sizes: list[int] = []

    def flush(batch: list[int]) -> None:
        with lock:
            seen.extend(batch)
            sizes.append(len(batch))
        time.sleep(0.001)  # a broker round trip, during which items pile up

    batcher = Batcher(flush, name="test-batcher")

    def submitter(n: int) -> None:
        for i in range(500):
            batcher.submit(n * 1000 + i)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert batcher.drain(WAIT)
    assert sorted(seen) == sorted(n * 1000 + i for n in range(8) for i in range(500))
    assert len(sizes) < len(seen)  # they were batched


def test_drain_in_a_process_that_submitted_nothing_returns_at_once() -> None:
    assert Batcher(Recorder(), name="test-batcher").drain(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_flushes_with_a_thread_of_its_own(tmp_path: Any) -> None:
    """gunicorn forks its workers: the parent's thread does not exist in the child."""
    out = tmp_path / "child.txt"

    def flush(batch: list[int]) -> None:
        with out.open("a") as file:
            file.write(f"{os.getpid()} {batch}\n")

    batcher = Batcher(flush, name="test-batcher")
    batcher.submit(1)
    assert batcher.drain(WAIT)
    pid = os.fork()
    if pid == 0:  # the child: submit, drain, exit without running pytest's teardown
        try:
            batcher.submit(2)
            os._exit(0 if batcher.drain(WAIT) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lines = out.read_text().splitlines()
    assert lines == [f"{os.getpid()} [1]", f"{pid} [2]"]


def test_under_load_a_batch_fills_for_the_linger_or_up_to_max_batch() -> None:
    flush = Recorder(hold=True)
    batcher = Batcher(flush, name="test-batcher", linger=5.0, max_batch=3)
    batcher.submit(1)
    assert flush.entered.wait(WAIT)
    batcher.submit(2)
    batcher.submit(3)
    flush.release.set()
    assert batcher.drain(WAIT)
    assert flush.batches == [[1], [2, 3]]  # a lone item goes at once, even with a linger
    # The last flush carried two items: the thread is busy and lets the next batch fill.
    batcher.submit(4)
    assert not batcher.drain(0.5)  # lingering (up to 5 s) for more
    batcher.submit(5)
    batcher.submit(6)  # max_batch reached: flushed without waiting out the linger
    assert batcher.drain(2.5)
    assert flush.batches == [[1], [2, 3], [4, 5, 6]]
