"""Walking a Stripe list as plain JSON, one page (one API call) at a time, fetched ahead.

Used by reconciliation, which reads thousands of invoices per run: ``raw_request`` goes through the
conference's client (key, API version, rate limit, retries, error classes) but skips building a
``StripeObject`` tree for every object, which costs more than the HTTP call itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import stripe


def pages(client: stripe.StripeClient, path: str, params: Mapping[str, Any]) -> Iterator[list[Any]]:
    """Walk a Stripe list one page (one API call) at a time, as plain JSON.

    ``raw_request`` goes through the same client (key, API version, rate limit, retries, error
    classes) but skips building a ``StripeObject`` tree for every invoice of every page, which
    costs more than the HTTP call itself for 100 invoices with their lines. The parameters are
    still checked by mypy against stripe-python's ``*ListParams`` at the call sites.
    """
    cursor: str | None = None
    while True:
        query = dict(params) if cursor is None else {**params, "starting_after": cursor}
        response = client.raw_request("get", path, **query)
        page = response.data if isinstance(response.data, Mapping) else {}
        data = page.get("data")
        items = list(data) if isinstance(data, list) else []
        yield items
        if not page.get("has_more") or not items:
            return
        last = items[-1].get("id") if isinstance(items[-1], Mapping) else None
        if not isinstance(last, str):
            return
        cursor = last


_DONE = object()


def prefetched(source: Iterator[list[Any]], *, depth: int = 2) -> Iterator[list[Any]]:
    """Fetch the next pages in a background thread while the caller applies the current one.

    The fetch is network and JSON work (no database), so it overlaps with the row-locking
    transactions of the page being applied. Errors surface in the caller, in order; a caller that
    stops early (an exception) stops the fetcher too.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def fetch() -> None:
        try:
            for page in source:
                if not put(page):
                    return
        except BaseException as error:  # handed to the caller, raised there
            put(_Failure(error))
            return
        put(_DONE)

    fetcher = threading.Thread(target=fetch, name="reconcile-fetch", daemon=True)
    fetcher.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        fetcher.join(timeout=30)


@dataclass(frozen=True)
class _Failure:
    error: BaseException
