"""A tiny stand-in for SiteSimulation with the same contract, for server tests that need exact control.

Objects carry only a few fields, each shaped as the Recurly OpenAPI spec says. Timestamps tie on
purpose (two accounts per hour, an account's objects share its second), which the real generator
rarely does, so cursors are tested on ties. Invoice i has i % 4 + 1 line items. advance(days)
touches every third account and subscription per day, all at one timestamp, and adds an invoice.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeSite:
    def __init__(self, subdomain: str = "sandbox", seed: int = 1, accounts: int = 30,
                 start_date: date = date(2024, 1, 1), until: date = date(2024, 3, 1)):
        self.subdomain = subdomain
        self.seed = seed
        self.now = datetime.combine(until, time(), tzinfo=timezone.utc)
        self.version = 0
        self.objects: dict[str, dict[str, dict]] = {r: {} for r in (
            "accounts", "subscriptions", "invoices", "line_items", "transactions", "plans", "add_ons")}
        self._start = datetime.combine(start_date, time(), tzinfo=timezone.utc)
        self._serial = 0
        for p in range(3):
            self._plan(p)
        for a in range(accounts):
            self._account(a)

    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self.seed % 1000:03d}{self._serial:08d}"

    def _at(self, n: int) -> str:
        # distinct-ish times with deliberate ties: several objects share a second
        return _iso(self._start + timedelta(hours=n // 2))

    def _plan(self, p: int) -> None:
        plan_id = self._id("p")
        stamp = self._at(p)
        self.objects["plans"][plan_id] = {
            "id": plan_id, "object": "plan", "code": f"plan-{p}", "name": f"Plan {p}",
            "state": "active" if p < 2 else "inactive", "interval_unit": "months", "interval_length": 1,
            "currencies": [{"currency": "USD", "unit_amount": 10.0 * (p + 1)}],
            "created_at": stamp, "updated_at": stamp}
        for k in range(2):
            add_on_id = self._id("d")
            self.objects["add_ons"][add_on_id] = {
                "id": add_on_id, "object": "add_on", "plan_id": plan_id, "code": f"extra-{k}",
                "name": f"Extra {k}", "state": "active", "currencies": [{"currency": "USD", "unit_amount": 1.0}],
                "created_at": stamp, "updated_at": stamp}

    def _account(self, a: int) -> None:
        account_id = self._id("a")
        stamp = self._at(a)
        mini = {"id": account_id, "object": "account", "code": f"cust-{a}", "email": f"c{a}@example.com"}
        self.objects["accounts"][account_id] = {
            "id": account_id, "object": "account", "code": f"cust-{a}", "state": "active",
            "email": f"c{a}@example.com" if a % 5 else None, "created_at": stamp, "updated_at": stamp}
        plan = list(self.objects["plans"].values())[a % 3]
        for s in range(a % 2 + 1):
            sub_id = self._id("s")
            self.objects["subscriptions"][sub_id] = {
                "id": sub_id, "object": "subscription", "uuid": f"{sub_id:0>32}", "account": mini,
                "plan": {"id": plan["id"], "object": "plan", "code": plan["code"], "name": plan["name"]},
                "state": ("active", "canceled", "expired", "future")[(a + s) % 4], "quantity": 1,
                "currency": "USD", "unit_amount": 10.0, "created_at": stamp, "updated_at": stamp}
        self._invoice(mini, a, stamp)

    def _invoice(self, account: dict, n: int, stamp: str) -> None:
        invoice_id = self._id("i")
        number = str(1000 + len(self.objects["invoices"]))
        items = []
        for k in range(n % 4 + 1):
            item_id = self._id("l")
            items.append({
                "id": item_id, "object": "line_item", "uuid": f"{item_id:0>32}", "account": account,
                "invoice_id": invoice_id, "invoice_number": number, "type": "charge" if k else "credit",
                "state": "invoiced", "refund": k == 3, "amount": 5.0, "currency": "USD",
                "created_at": stamp, "updated_at": stamp})
        for item in items:
            self.objects["line_items"][item["id"]] = item
        self.objects["invoices"][invoice_id] = {
            "id": invoice_id, "object": "invoice", "number": number, "account": account,
            "type": "charge", "state": ("paid", "past_due", "pending")[n % 3], "currency": "USD",
            "total": 5.0 * len(items), "line_items": items, "created_at": stamp, "updated_at": stamp}
        tx_id = self._id("t")
        self.objects["transactions"][tx_id] = {
            "id": tx_id, "object": "transaction", "uuid": f"{tx_id:0>32}", "account": account,
            "type": ("purchase", "refund", "verify")[n % 3], "success": n % 2 == 0, "status": "success",
            "amount": 5.0, "currency": "USD", "created_at": stamp, "updated_at": stamp}

    def advance(self, days: int = 1) -> dict[str, int]:
        changed = {r: 0 for r in self.objects}
        for _ in range(days):
            self.now += timedelta(days=1)
            self.version += 1
            day = self.version
            stamp = _iso(self.now - timedelta(hours=1))
            for i, account in enumerate(self.objects["accounts"].values()):
                if (i + day) % 3 == 0:
                    account["updated_at"] = stamp
                    account["email"] = f"c{i}.{day}@example.com"
                    changed["accounts"] += 1
            for i, sub in enumerate(self.objects["subscriptions"].values()):
                if (i + day) % 3 == 0:
                    sub["updated_at"] = stamp
                    sub["quantity"] += 1
                    changed["subscriptions"] += 1
            first = next(iter(self.objects["accounts"].values()))
            self._invoice({"id": first["id"], "object": "account", "code": first["code"]}, day, stamp)
            changed["invoices"] += 1
            changed["transactions"] += 1
            changed["line_items"] += day % 4 + 1
        return changed
