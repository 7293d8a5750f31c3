"""Completing what a list page leaves out, per resource.

Invoices embed at most a few line items; when `has_more_line_items` is true the rest must be read
from `/invoices/{id}/line_items`. The staged invoice then carries its complete `line_items` list in
its raw JSON: the embedded items as the API sent them, then the missing ones in created_at order,
and `has_more_line_items` false, since the staged object is no longer truncated.
Only truncated invoices cost a request, so a day's incremental read stays near its minimum.

A completion is declared per resource by the boolean field that says a record needs it. The
extractor's fetching thread finds those records with a decoder that reads only that field, decodes
just them into objects and completes them; every other record stays raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import msgspec
from urllib.parse import quote

from recurly_elt.recurly.client import PAGE_SIZE, RecurlyClient
from recurly_elt.staging.rows import decode_object


# Pages one invoice's line item list may take (40,000 line items): a list that goes on is refused.
COMPLETION_MAX_PAGES = 200


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
        path = f"/invoices/{quote(str(invoice.get('id') or ''), safe='')}/line_items"  # an id is not a path
        for page in client.pages(path, params, max_pages=COMPLETION_MAX_PAGES):
            items.extend(item for item in page.data if item.get("id") not in seen)
            requests += 1
        invoice["line_items"] = {**embedded, "data": items, "has_more": False, "next": None} if envelope else items
        invoice["has_more_line_items"] = False
    return requests


@dataclass(frozen=True)
class Completion:
    flag: str                                              # a boolean field: true = complete this record
    complete: Callable[[RecurlyClient, list[dict]], int]   # completes objects in place, returns requests

    @cached_property
    def _flag_decoder(self) -> msgspec.json.Decoder:
        flag = msgspec.defstruct("CompletionFlag", [("flag", bool | None, None)], rename={"flag": self.flag})
        return msgspec.json.Decoder(flag, strict=False)

    def complete_page(self, client: RecurlyClient, records: Sequence[bytes]) -> dict[int, dict]:
        """Complete the records of a page that need it: {position in the page: completed object}."""
        flagged = {}
        for at, raw in enumerate(records):
            try:
                if self._flag_decoder.decode(raw).flag:
                    flagged[at] = decode_object(raw)  # amounts as Decimal (staging/rows.py)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue  # a record the rules will refuse (quarantined by its conversion): nothing to complete
        flagged = {at: obj for at, obj in flagged.items() if isinstance(obj, dict) and obj.get("id")}
        if flagged:
            self.complete(client, list(flagged.values()))
        return flagged


COMPLETIONS: dict[str, Completion] = {
    "invoices": Completion("has_more_line_items", complete_invoice_line_items),
}
