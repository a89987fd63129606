"""``/v1/webhook_endpoints``: where an account's events are delivered, and the signing secret."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import invalid_request, no_such, parameter_missing
from ..ids import new_id, random_token
from ..models import JSON, WebhookEndpointRec
from ..render import render_webhook_endpoint
from ..schema import UNSET
from .context import Ctx, Params
from .lists import newest_first, paginate
from .params import merge_metadata, reject_unsupported

MAX_WEBHOOK_ENDPOINTS = 16


def _check_url(url: str, *, param: str = "url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_request(f"Invalid URL: {url}", param=param, code="url_invalid")
    return url


def create_webhook_endpoint(ctx: Ctx, params: Params) -> JSON:
    reject_unsupported(params, ("connect",))
    live_endpoints = [e for e in ctx.account.webhook_endpoints.values() if not e.deleted]
    if len(live_endpoints) >= MAX_WEBHOOK_ENDPOINTS:
        raise invalid_request(
            f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} test webhook endpoints.",
            param="url",
        )
    if not params["enabled_events"]:
        raise parameter_missing("enabled_events")
    description = params.get("description")
    endpoint = WebhookEndpointRec(
        id=new_id("we"),
        created=ctx.now,
        livemode=ctx.account.livemode,
        url=_check_url(params["url"]),
        enabled_events=list(params["enabled_events"]),
        secret="whsec_" + random_token(32),
        description=None if description is UNSET else description,
        metadata=merge_metadata(params.get("metadata", {}), param="metadata"),
        api_version=params.get("api_version"),
        seq=ctx.account.next_seq(),
    )
    ctx.account.webhook_endpoints[endpoint.id] = endpoint
    return render_webhook_endpoint(endpoint, with_secret=True)


def _require_webhook_endpoint(ctx: Ctx, endpoint_id: str) -> WebhookEndpointRec:
    endpoint = ctx.account.webhook_endpoints.get(endpoint_id)
    if endpoint is None or endpoint.deleted:
        raise no_such("webhook_endpoint", endpoint_id)
    return endpoint


def retrieve_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    return render_webhook_endpoint(_require_webhook_endpoint(ctx, endpoint_id))


def update_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    endpoint = _require_webhook_endpoint(ctx, endpoint_id)
    url = _check_url(params["url"]) if "url" in params else None
    if "enabled_events" in params and not params["enabled_events"]:
        raise parameter_missing("enabled_events")
    metadata = (
        merge_metadata(params["metadata"], endpoint.metadata, param="metadata")
        if "metadata" in params
        else endpoint.metadata
    )
    if url is not None:
        endpoint.url = url
    if "enabled_events" in params:
        endpoint.enabled_events = list(params["enabled_events"])
    if "description" in params:
        value = params["description"]
        endpoint.description = None if value is UNSET else value
    endpoint.metadata = metadata
    if "disabled" in params:
        endpoint.status = "disabled" if params["disabled"] else "enabled"
    return render_webhook_endpoint(endpoint)


def delete_webhook_endpoint(ctx: Ctx, params: Params, endpoint_id: str) -> JSON:
    endpoint = _require_webhook_endpoint(ctx, endpoint_id)
    endpoint.deleted = True
    return render_webhook_endpoint(endpoint)


def list_webhook_endpoints(ctx: Ctx, params: Params) -> JSON:
    records = [
        endpoint
        for endpoint in newest_first(ctx.account.webhook_endpoints.values())
        if not endpoint.deleted
    ]
    return paginate(
        records,
        params,
        url="/v1/webhook_endpoints",
        render=render_webhook_endpoint,
        id_of=lambda record: record.id,
        kind="webhook_endpoint",
    )
