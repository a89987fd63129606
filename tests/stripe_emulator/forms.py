"""Decode ``application/x-www-form-urlencoded`` the way Stripe reads what stripe-python sends.

stripe-python encodes nested parameters with brackets: ``metadata[po]=1``,
``lines[0][price_data][currency]=usd`` and, for lists, ``expand[0]=lines`` (other clients send
``expand[]=lines``). An empty value (``metadata=``) means "unset". The decoder builds a tree of
dicts and strings; ``[n]`` segments stay dict keys until validation turns them into a list,
because only the schema knows whether ``a[0]`` is a list element or a map key called ``"0"``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid_request

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

FormTree = dict[str, Any]


def split_key(key: str) -> list[str]:
    """``"lines[0][amount]"`` -> ``["lines", "0", "amount"]``; ``"a[]"`` -> ``["a", ""]``."""
    match = _KEY.match(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def bracket_path(segments: list[str]) -> str:
    """The inverse of :func:`split_key`, as Stripe names parameters in errors."""
    head, *rest = segments
    return head + "".join(f"[{segment}]" for segment in rest)


def decode(raw: str) -> FormTree:
    tree: FormTree = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        _insert(tree, split_key(key), value)
    return tree


def _insert(tree: FormTree, segments: list[str], value: str) -> None:
    node: Any = tree
    for depth, segment in enumerate(segments[:-1]):
        following = segments[depth + 1]
        if segment == "":
            raise invalid_request(
                f"Invalid array: {bracket_path(segments)}", param=bracket_path(segments)
            )
        child = node.get(segment)
        wants_list = following == "" and depth + 1 == len(segments) - 1
        if child is None:
            child = [] if wants_list else {}
            node[segment] = child
        elif not isinstance(child, list if wants_list else dict):
            raise _structure_error(segments[: depth + 1])
        node = child
    last = segments[-1]
    if isinstance(node, list):
        node.append(value)
        return
    if last in node and isinstance(node[last], dict | list):
        raise _structure_error(segments)
    node[last] = value


def _structure_error(segments: list[str]) -> Exception:
    path = bracket_path(segments)
    return invalid_request(
        f"Invalid value for {path}: it was sent both as a single value and as a nested object.",
        param=path,
    )
