"""Events: every change records one (and schedules its webhooks); ``/v1/events`` reads them back."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import invalid_request, no_such, parameters_exclusive
from ..ids import new_id
from ..models import JSON, EventRec
from ..render import render_event
from ..webhooks import Delivery, encode_payload
from .context import Ctx, Params
from .lists import matches_range, newest_first, paginate

EVENT_RETENTION_SECONDS = 30 * 24 * 3600


def previous_attributes(before: JSON, after: JSON) -> JSON:
    return {
        key: before[key]
        for key in before
        if key not in ("lines", "payments") and before.get(key) != after.get(key)
    }


def emit(ctx: Ctx, event_type: str, obj: JSON, previous: JSON | None = None) -> EventRec:
    """Record an event and schedule its webhooks to every endpoint subscribed to it."""
    account = ctx.account
    data: JSON = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    endpoints = [
        endpoint
        for endpoint in account.webhook_endpoints.values()
        if not endpoint.deleted and endpoint.wants(event_type)
    ]
    event = EventRec(
        id=new_id("evt"),
        type=event_type,
        created=ctx.now,
        livemode=account.livemode,
        data=data,
        request_id=ctx.request_id,
        idempotency_key=ctx.idempotency_key,
        pending_webhooks=len(endpoints),
        seq=account.next_seq(),
    )
    account.events[event.id] = event
    if endpoints:
        payload = encode_payload(render_event(event))
        for endpoint in endpoints:
            ctx.deliveries.append(
                Delivery(account, event, endpoint.id, endpoint.url, endpoint.secret, payload)
            )
    return event


def _visible_event(ctx: Ctx, event: EventRec) -> bool:
    return event.created >= ctx.now - EVENT_RETENTION_SECONDS


def retrieve_event(ctx: Ctx, params: Params, event_id: str) -> JSON:
    event = ctx.account.events.get(event_id)
    if event is None or not _visible_event(ctx, event):
        raise no_such("event", event_id)
    return render_event(event)


def _type_matcher(pattern: str) -> Callable[[str], bool]:
    if "*" not in pattern:
        return lambda event_type: event_type == pattern
    regex = re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")
    return lambda event_type: regex.match(event_type) is not None


def list_events(ctx: Ctx, params: Params) -> JSON:
    if "type" in params and "types" in params:
        raise parameters_exclusive("type", "types")
    matchers: list[Callable[[str], bool]] = []
    if "type" in params:
        matchers = [_type_matcher(params["type"])]
    elif "types" in params:
        if len(params["types"]) > 20:
            raise invalid_request("You may pass up to 20 event types.", param="types")
        matchers = [_type_matcher(pattern) for pattern in params["types"]]
    created = params.get("created")
    delivery_success = params.get("delivery_success")
    records = [
        event
        for event in newest_first(ctx.account.events.values())
        if _visible_event(ctx, event)
        and (not matchers or any(match(event.type) for match in matchers))
        and matches_range(created, event.created)
        and (delivery_success is None or (event.pending_webhooks == 0) == delivery_success)
    ]
    return paginate(
        records,
        params,
        url="/v1/events",
        render=render_event,
        id_of=lambda record: record.id,
        kind="event",
    )
