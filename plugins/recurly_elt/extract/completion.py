"""Completing what a list page leaves out, per resource.

Invoices embed at most a few line items; when `has_more_line_items` is true the rest must be read
from `/invoices/{id}/line_items`. The staged invoice then carries its complete `line_items` list in
its raw JSON: the embedded items as the API sent them, then the missing ones in created_at order,
and `has_more_line_items` false, since the staged object is no longer truncated.
Only truncated invoices cost a request, so a day's incremental read stays near its minimum.
"""

from __future__ import annotations

from typing import Callable

from recurly_elt.recurly.client import PAGE_SIZE, RecurlyClient


def complete_invoice_line_items(client: RecurlyClient, invoices: list[dict]) -> int:
    """Replace truncated embedded line items with the full list; returns the requests spent."""
    requests = 0
    for invoice in invoices:
        if not invoice.get("has_more_line_items"):
            continue
        embedded = invoice.get("line_items")
        envelope = isinstance(embedded, dict)  # a list envelope, should an API version embed one
        items: list[dict] = list((embedded.get("data") if envelope else embedded) or [])
        seen = {item.get("id") for item in items}
        params = {"limit": PAGE_SIZE, "sort": "created_at", "order": "asc"}
        for page in client.pages(f"/invoices/{invoice['id']}/line_items", params):
            items.extend(item for item in page.data if item.get("id") not in seen)
            requests += 1
        invoice["line_items"] = {**embedded, "data": items, "has_more": False, "next": None} if envelope else items
        invoice["has_more_line_items"] = False
    return requests


PAGE_COMPLETERS: dict[str, Callable[[RecurlyClient, list[dict]], int]] = {
    "invoices": complete_invoice_line_items,
}
