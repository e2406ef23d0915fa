"""Curated overlays merged over generated flow definitions: what the project knows beyond the DTC catalogue.

Better keys, notes, lenient ranges, checks, formats the catalogue leaves blank live in `flow_definitions/curated/`
overlays (docs/flow-definitions.md); the importer merges each over the document it generates, so a re-import of
the next release keeps them. Deterministic: key order is fixed, so the same inputs always dump the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Document = dict[str, Any]

_TOP_ORDER = ("flow", "version", "name", "ownership", "description", "source", "routes", "groups")
_GROUP_ORDER = ("code", "key", "name", "parent", "range", "lenient_range", "lenient_reason", "checks", "note",
                "items")
_ITEM_ORDER = ("ref", "key", "name", "format", "presence", "values", "checks", "note")


def _ordered(document: Mapping[str, Any], order: Sequence[str]) -> Document:
    ordered = {name: document[name] for name in order if name in document}
    ordered.update({name: value for name, value in document.items() if name not in ordered})
    return ordered


def occurrences(entries: Iterable[Mapping[str, Any]], field_name: str) -> list[tuple[Any, int]]:
    """(value, n) for each entry: the n-th entry with that value of `field_name`, so repeated codes stay apart."""
    seen: dict[Any, int] = {}
    result = []
    for entry in entries:
        value = entry.get(field_name)
        seen[value] = seen.get(value, 0) + 1
        result.append((value, seen[value]))
    return result


def apply_overlay(generated: Document, overlay: Mapping[str, Any]) -> Document:
    """Merge a curated overlay over a generated definition.

    Top-level fields the overlay states replace the generated ones. Overlay groups match generated groups by code
    and occurrence (the second SUP is the second SUP), items by reference and occurrence within the group; stated
    fields replace, `checks` are joined. An overlay item that states a format brings its own valid set: the
    catalogue's is dropped unless the overlay states `values` too. The structure (which groups, their parents and
    order) stays the catalogue's; overlay groups or items the catalogue lacks are kept after their overlay
    predecessor, so nothing curated is lost (`compare` reports them).
    """
    merged: Document = {name: value for name, value in generated.items() if name != "groups"}
    merged.update({name: value for name, value in overlay.items() if name != "groups"})
    groups = [dict(group) for group in generated["groups"]]
    old_keys = [group["key"] for group in groups]
    places = {match: index for index, match in enumerate(occurrences(groups, "code"))}
    inserted: list[tuple[int, Document]] = []
    last = -1
    for match, group_overlay in zip(occurrences(overlay.get("groups") or [], "code"), overlay.get("groups") or []):
        index = places.get(match)
        if index is None:
            inserted.append((last, dict(group_overlay)))
            continue
        last = index
        target = groups[index]
        for name, value in group_overlay.items():
            if name == "items":
                target["items"] = _merge_items(target["items"], value or [])
            elif name == "checks":
                target["checks"] = join(target.get("checks"), value)
            elif name != "parent":
                target[name] = value
    renamed = dict(zip(old_keys, (group["key"] for group in groups)))
    for group in groups:
        if group["parent"] is not None:
            group["parent"] = renamed[group["parent"]]
    for after, group in reversed(inserted):
        groups.insert(after + 1, group)
    merged["groups"] = [_ordered(group, _GROUP_ORDER) for group in groups]
    return _ordered(merged, _TOP_ORDER)


def join(first: Any, second: Any) -> list[Any]:
    joined: list[Any] = []
    for check in [*(first or []), *(second or [])]:
        if check not in joined:
            joined.append(check)
    return joined


def _merge_items(generated: list[Document], overlay: list[Mapping[str, Any]]) -> list[Document]:
    items = [dict(item) for item in generated]
    places = {match: index for index, match in enumerate(occurrences(items, "ref"))}
    inserted: list[tuple[int, Document]] = []
    last = -1
    for match, item_overlay in zip(occurrences(overlay, "ref"), overlay):
        index = places.get(match) if match[0] is not None else None
        if index is None:
            inserted.append((last, dict(item_overlay)))
            continue
        last = index
        target = items[index]
        if "format" in item_overlay and "values" not in item_overlay:
            target.pop("values", None)
        if "note" not in item_overlay and "format" in item_overlay:
            target.pop("note", None)  # the generated note explains the generated format, which the overlay replaced
        for name, value in item_overlay.items():
            target[name] = join(target.get("checks"), value) if name == "checks" else value
    for after, item in reversed(inserted):
        items.insert(after + 1, item)
    return [_ordered(item, _ITEM_ORDER) for item in items]



def with_item_check(overlay: Mapping[str, Any], ref: str, check: str) -> Document:
    """A whole overlay (a flow the catalogue lacks) with `check` on its `ref` items, as generated ones have."""
    groups = [{**group, "items": [_ordered({**item, "checks": join([check], item.get("checks"))},
                                           _ITEM_ORDER) if item.get("ref") == ref else item
                                  for item in group.get("items") or []]}
              for group in overlay.get("groups") or []]
    return {**overlay, "groups": groups}
