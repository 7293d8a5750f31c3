"""Hand-made Recurly API objects for pinning one MRR rule per test (shapes as the API returns)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def ts(day: str, time: str = "10:00:00") -> str:
    return f"{day}T{time}Z"


@dataclass
class Book:
    """A site's objects, built step by step: book.objects is what load_objects takes."""

    objects: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "accounts", "subscriptions", "invoices", "line_items", "transactions", "plans", "add_ons")})

    def plan(self, code: str, unit: str = "months", length: int = 1, name: str | None = None) -> dict:
        p = {"id": _id("p"), "object": "plan", "code": code, "name": name or code.title(), "state": "active",
             "interval_unit": unit, "interval_length": length, "created_at": ts("2024-01-01"),
             "updated_at": ts("2024-01-01")}
        self.objects["plans"].append(p)
        return p

    def usage_add_on(self, plan: dict, code: str) -> dict:
        a = {"id": _id("a"), "object": "add_on", "plan_id": plan["id"], "code": code, "name": code,
             "state": "active", "add_on_type": "usage", "usage_type": "price",
             "created_at": ts("2024-01-01"), "updated_at": ts("2024-01-01")}
        self.objects["add_ons"].append(a)
        return a

    def account(self, code: str | None = None, **extra) -> dict:
        aid = _id("acc")
        a = {"id": aid, "object": "account", "code": code or aid, "state": "active",
             "created_at": ts("2024-01-01"), "updated_at": ts("2024-01-01"), **extra}
        self.objects["accounts"].append(a)
        return a

    def subscription(self, account: dict, plan: dict, activated: str, currency: str = "USD", **extra) -> dict:
        s = {"id": _id("s"), "object": "subscription", "account": {"id": account["id"], "code": account["code"]},
             "plan": {"id": plan["id"], "code": plan["code"], "name": plan["name"]}, "state": "active",
             "currency": currency, "unit_amount": 0.0, "quantity": 1, "activated_at": ts(activated),
             "created_at": ts(activated), "updated_at": ts(activated), **extra}
        self.objects["subscriptions"].append(s)
        return s

    def invoice(self, account: dict, created: str, origin: str = "renewal", state: str = "paid",
                subscription: dict | None = None, currency: str = "USD", total: float = 0.0, **extra) -> dict:
        i = {"id": _id("inv"), "object": "invoice", "type": "charge", "origin": origin, "state": state,
             "account": {"id": account["id"], "code": account["code"]}, "currency": currency,
             "subscription_ids": [subscription["id"]] if subscription else [], "total": total,
             "paid": total if state == "paid" else 0.0, "balance": 0.0 if state == "paid" else total,
             "created_at": ts(created), "updated_at": ts(created), "due_at": ts(created),
             "closed_at": ts(created) if state == "paid" else None, **extra}
        self.objects["invoices"].append(i)
        return i

    def charge(self, sub: dict, plan: dict, start: str, end: str, unit_amount: float, quantity: int = 1,
               origin: str = "plan", proration: float | None = None, discount: float = 0.0, tax: float = 0.0,
               credit: bool = False, add_on: dict | None = None, invoice_state: str = "paid",
               refund: bool = False, currency: str | None = None, invoice: dict | None = None, **extra) -> dict:
        """A line item with a service period [start, end) on its own invoice, or on `invoice`."""
        account = next(a for a in self.objects["accounts"] if a["id"] == sub["account"]["id"])
        sign = -1.0 if credit else 1.0
        subtotal = round(sign * unit_amount * quantity * (proration or 1.0), 2)
        amount = round(subtotal - sign * discount + sign * tax, 2)
        inv = invoice or self.invoice(account, start[:10], state=invoice_state, subscription=sub,
                                      currency=currency or sub["currency"], total=amount)
        li = {"id": _id("li"), "object": "line_item", "type": "credit" if credit else "charge",
              "state": "invoiced", "account": {"id": account["id"], "code": account["code"]},
              "subscription_id": sub["id"], "plan_id": plan["id"], "plan_code": plan["code"],
              "add_on_id": add_on["id"] if add_on else None, "add_on_code": add_on["code"] if add_on else None,
              "invoice_id": inv["id"], "origin": origin, "currency": currency or sub["currency"],
              "unit_amount": sign * unit_amount, "quantity": quantity, "subtotal": subtotal,
              "discount": sign * discount, "tax": sign * tax, "amount": amount, "proration_rate": proration,
              "refund": refund, "start_date": ts(start) if "T" not in start else start,
              "end_date": (ts(end) if "T" not in end else end) if end else None,
              "created_at": ts(start[:10]), "updated_at": ts(start[:10]), **extra}
        self.objects["line_items"].append(li)
        return li
