"""Stripe's list endpoints: newest first, cursor pagination, ``created``-style range filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import invalid_request, no_such, parameters_exclusive
from ..models import JSON
from .context import Params


def matches_range(bounds: Any, value: int) -> bool:
    """A filter like ``created``: absent, an exact timestamp, or ``gt``/``gte``/``lt``/``lte``."""
    if bounds is None:
        return True
    if isinstance(bounds, int):
        return value == bounds
    checks = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(checks[op](bound) for op, bound in bounds.items())


T = TypeVar("T")


def paginate(
    items: Sequence[T],
    params: Params,
    *,
    url: str,
    render: Callable[[T], JSON],
    id_of: Callable[[T], str],
    kind: str,
) -> JSON:
    """Stripe's cursor pagination over ``items`` (already in list order, newest first)."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid_request(
            f"Invalid limit: must be between 1 and 100 (you passed {limit})", param="limit"
        )
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after is not None and ending_before is not None:
        raise parameters_exclusive("ending_before", "starting_after")
    ids = [id_of(item) for item in items]
    if starting_after is not None:
        if starting_after not in ids:
            raise no_such(kind, starting_after, param="starting_after", status=400)
        start = ids.index(starting_after) + 1
        page = items[start : start + limit]
        has_more = start + limit < len(items)
    elif ending_before is not None:
        if ending_before not in ids:
            raise no_such(kind, ending_before, param="ending_before", status=400)
        end = ids.index(ending_before)
        start = max(end - limit, 0)
        page = items[start:end]
        has_more = start > 0
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return {
        "object": "list",
        "data": [render(item) for item in page],
        "has_more": has_more,
        "url": url,
    }


def newest_first(records: Iterable[T]) -> list[T]:
    return sorted(records, key=lambda record: getattr(record, "seq", 0), reverse=True)


class Listed(Protocol):
    """What every listable record has."""

    id: str
    created: int


R = TypeVar("R", bound=Listed)


def list_page(
    records: Iterable[R],
    params: Params,
    *,
    filters: Sequence[str],
    url: str,
    render: Callable[[R], JSON],
    kind: str,
) -> JSON:
    """A list endpoint: ``records`` newest first, narrowed by ``created`` and by each filter
    parameter that was given (``charge``, ``invoice``...: the record's attribute of that name),
    then one page of them."""
    wanted = {name: params[name] for name in filters if name in params}
    created = params.get("created")
    selected = [
        record
        for record in newest_first(records)
        if matches_range(created, record.created)
        and all(getattr(record, name) == value for name, value in wanted.items())
    ]
    return paginate(
        selected, params, url=url, render=render, id_of=lambda record: record.id, kind=kind
    )
