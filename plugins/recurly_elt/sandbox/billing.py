"""The billing engine: line items, invoices, payment transactions and refunds.

Amounts follow Recurly's arithmetic per line item: subtotal = unit_amount x quantity (x proration
rate for a mid-period change; `unit_amount_decimal` and `quantity_decimal` replace the two where a
price has sub-cent digits or a quantity is fractional), discount = subtotal x coupon percent, or a
fixed-amount coupon's share of the item x proration rate, at most the subtotal (coupons.py), tax =
(subtotal - discount) x the account's tax rate, amount = subtotal - discount + tax. Tax-inclusive
prices (the customer's `tax_inclusive`: EUR price books include VAT) carry their tax inside:
tax = (subtotal - discount) x rate / (1 + rate), amount = subtotal - discount. Invoice totals are the
sums of their line items. Credit line items (the unused part of an old plan, refunds) carry negative
amounts.
"""

from __future__ import annotations

from dataclasses import dataclass

from recurly_elt.sandbox.customers import Customer
from recurly_elt.sandbox.store import SiteStore, compact
from recurly_elt.sandbox.timestamps import iso


@dataclass
class Charge:
    """One line of an invoice before it is issued."""

    origin: str                     # plan, plan_trial, add_on, add_on_trial, one_time
    unit_amount: float              # negative for credits
    quantity: int
    description: str
    subscription_id: str | None = None
    plan: dict | None = None        # PlanMini
    add_on: dict | None = None      # AddOnMini
    start: int | None = None        # service period (epoch seconds)
    end: int | None = None
    proration_rate: float | None = None
    discount_pct: float = 0.0
    discount_amount: float = 0.0    # a fixed-amount coupon's share of this item, for the full period
    product_code: str | None = None
    unit_amount_decimal: str | None = None   # sub-cent price (text, as the API sends it)
    quantity_decimal: str | None = None      # fractional quantity; `quantity` is then its rounded integer


# (status_code, status_message) of declined payments
EXPIRED_CARD = ("expired_card", "Your credit card is expired, please update your card.")
INSUFFICIENT_FUNDS = ("insufficient_funds", "The transaction was declined due to insufficient funds in your account.")
APPROVED = ("approved", "Transaction approved.")


class Billing:
    def __init__(self, store: SiteStore):
        self.store = store
        self._next_number = 1001
        # invoice id -> its successful payment transaction (what a refund refers to)
        self.payments: dict[str, dict] = {}

    # -- invoices -----------------------------------------------------------------------------
    def issue(self, customer: Customer, ts: int, origin: str, charges: list[Charge],
              subscription_ids: list[str], previous_invoice_id: str | None = None) -> dict:
        """Create an invoice with its line items. Charge invoices start `pending` until collected;
        a zero total is paid at once; a negative total is a credit invoice, closed at once."""
        store = self.store
        stamp = iso(ts)
        invoice_id = store.mint.next_id()
        invoice_uuid = store.mint.next_uuid()
        number = str(self._next_number)
        self._next_number += 1
        lines = [self._line(customer, stamp, c, invoice_id, number) for c in charges]
        subtotal = round(sum(li["subtotal"] for li in lines), 2)
        discount = round(sum(li["discount"] for li in lines), 2)
        tax = round(sum(li["tax"] for li in lines), 2)
        total = round(sum(li["amount"] for li in lines), 2)
        kind = "credit" if total < 0 else "charge"
        billing_info = customer.obj.get("billing_info")
        invoice = compact({
            "id": invoice_id,
            "uuid": invoice_uuid,
            "object": "invoice",
            "type": kind,
            "origin": origin,
            "state": "pending",
            "account": customer.mini,
            "billing_info_id": billing_info["id"] if billing_info else None,
            "subscription_ids": subscription_ids,
            "previous_invoice_id": previous_invoice_id,
            "number": number,
            "collection_method": customer.collection_method,
            "po_number": None,
            "net_terms": customer.net_terms,
            "net_terms_type": "net",
            "address": customer.invoice_address,
            "currency": customer.currency,
            "discount": discount,
            "subtotal": subtotal,
            "tax": tax,
            "total": total,
            "refundable_amount": 0.0,
            "paid": 0.0,
            "balance": total,
            "used_tax_service": False,
            "vat_number": customer.obj.get("vat_number"),
            "line_items": lines,
            "has_more_line_items": False,
            "created_at": stamp,
            "updated_at": stamp,
            "due_at": iso(ts + customer.net_terms * 86400),
            "closed_at": None,
            "dunning_events_sent": 0,
            "final_dunning_event": False,
        })
        if customer.tax_info:
            invoice["tax_info"] = customer.tax_info
        if total <= 0:
            invoice["state"] = "closed" if kind == "credit" else "paid"
            invoice["balance"] = 0.0
            invoice["closed_at"] = stamp
        store.add("invoices", invoice)
        for line in lines:
            store.add("line_items", line)
        return invoice

    def _line(self, customer: Customer, stamp: str, c: Charge, invoice_id: str, number: str) -> dict:
        mint = self.store.mint
        line_id = mint.next_id()
        unit = (-1 if c.unit_amount < 0 else 1) * float(c.unit_amount_decimal) if c.unit_amount_decimal else c.unit_amount
        quantity = float(c.quantity_decimal) if c.quantity_decimal else c.quantity
        subtotal = round(unit * quantity * (c.proration_rate or 1.0), 2)
        discount = round(subtotal * c.discount_pct, 2)
        if c.discount_amount:  # prorated like the item, never more than it (coupons.py)
            off = min(abs(subtotal), round(c.discount_amount * (c.proration_rate or 1.0), 2))
            discount = -off if subtotal < 0 else off
        charged = subtotal - discount
        if customer.tax_inclusive:
            tax = round(charged * customer.tax_rate / (1 + customer.tax_rate), 2)
            amount = round(charged, 2)
        else:
            tax = round(charged * customer.tax_rate, 2)
            amount = round(charged + tax, 2)
        line = compact({
            "id": line_id,
            "object": "line_item",
            "uuid": mint.next_uuid(),
            "type": "credit" if c.unit_amount < 0 else "charge",
            "revenue_schedule_type": "at_invoice" if c.end is None else "evenly",
            "state": "invoiced",
            "legacy_category": None,
            "account": customer.mini,
            "bill_for_account_id": customer.obj["id"],
            "subscription_id": c.subscription_id,
            "plan_id": c.plan["id"] if c.plan else None,
            "plan_code": c.plan["code"] if c.plan else None,
            "add_on_id": c.add_on["id"] if c.add_on else None,
            "add_on_code": c.add_on["code"] if c.add_on else None,
            "invoice_id": invoice_id,
            "invoice_number": number,
            "previous_line_item_id": None,
            "original_line_item_invoice_id": None,
            "origin": c.origin,
            "product_code": c.product_code,
            "credit_reason_code": None,
            "currency": customer.currency,
            "amount": amount,
            "description": c.description,
            "quantity": c.quantity,
            "quantity_decimal": c.quantity_decimal,
            "unit_amount": unit,
            "unit_amount_decimal": ("-" if c.unit_amount < 0 else "") + c.unit_amount_decimal if c.unit_amount_decimal else None,
            "tax_inclusive": customer.tax_inclusive,
            "subtotal": subtotal,
            "discount": discount,
            "tax": tax,
            "taxable": customer.tax_rate > 0,
            "tax_exempt": False,
            "proration_rate": c.proration_rate,
            "refund": False,
            "refunded_quantity": 0,
            "credit_applied": 0.0,
            "start_date": iso(c.start) if c.start is not None else stamp,
            "end_date": iso(c.end) if c.end is not None else None,
            "custom_fields": [],
            "created_at": stamp,
            "updated_at": stamp,
        })
        if customer.tax_info:
            line["tax_info"] = customer.tax_info
        return line

    # -- payments -----------------------------------------------------------------------------
    def collect(self, customer: Customer, invoice: dict, ts: int, approved: bool,
                decline: tuple[str, str] = INSUFFICIENT_FUNDS, origin: str = "recurring") -> dict:
        """Try to collect the invoice's balance from the account's card: one purchase transaction.
        Approved: the invoice is paid. Declined: the invoice is (or stays) past due."""
        store = self.store
        stamp = iso(ts)
        code, message = APPROVED if approved else decline
        txn = self._transaction(customer, invoice, ts, "purchase", invoice["balance"], approved,
                                origin, code, message)
        if approved:
            invoice["state"] = "paid"
            invoice["paid"] = invoice["total"]
            invoice["balance"] = 0.0
            invoice["refundable_amount"] = invoice["total"]
            invoice["closed_at"] = stamp
            self.payments[invoice["id"]] = txn
        else:
            invoice["state"] = "past_due"
            billing_info = customer.obj.get("billing_info")
            if decline == EXPIRED_CARD and billing_info and billing_info.get("valid"):
                billing_info["valid"] = False  # the card on file no longer works: invalid billing info
                billing_info["updated_at"] = stamp
                store.touch("accounts", customer.obj, stamp)
        store.touch("invoices", invoice, stamp)
        return txn

    def dunning_notice(self, invoice: dict, ts: int, final: bool) -> None:
        invoice["dunning_events_sent"] += 1
        invoice["final_dunning_event"] = final
        if final:
            invoice["state"] = "failed"
            invoice["closed_at"] = iso(ts)
        self.store.touch("invoices", invoice, iso(ts))

    def refund(self, customer: Customer, invoice: dict, ts: int) -> dict | None:
        """Refund the plan line item of a paid invoice in full: a credit invoice (origin refund)
        with a refund line item, and a refund transaction pointing at the original payment."""
        payment = self.payments.get(invoice["id"])
        plan_lines = [li for li in invoice["line_items"] if li["origin"] == "plan" and li["amount"] > 0
                      and li["refunded_quantity"] == 0]
        if payment is None or not plan_lines or invoice["refundable_amount"] <= 0:
            return None
        original = plan_lines[0]
        stamp = iso(ts)
        credit = self.issue(customer, ts, "refund", [
            Charge("plan", -original["unit_amount"], original["quantity"],
                   f"Refund: {original['description']}", original["subscription_id"],
                   {"id": original["plan_id"], "code": original["plan_code"]},
                   start=None, end=None, proration_rate=original.get("proration_rate")),
        ], invoice["subscription_ids"], previous_invoice_id=invoice["id"])
        line = credit["line_items"][0]
        # A refund reverses the original line item exactly (its discount and tax too).
        for field in ("subtotal", "discount", "tax", "amount"):
            line[field] = -original[field]
        line["start_date"], line["end_date"] = original["start_date"], original["end_date"]
        line["revenue_schedule_type"] = original["revenue_schedule_type"]
        line["refund"] = True
        line["credit_reason_code"] = "refund"
        line["previous_line_item_id"] = original["id"]
        line["original_line_item_invoice_id"] = invoice["id"]
        for field in ("subtotal", "discount", "tax"):
            credit[field] = line[field]
        credit["total"] = line["amount"]
        credit["balance"] = 0.0
        amount = original["amount"]
        txn = self._transaction(customer, credit, ts, "refund", amount, True, "merchant", *APPROVED)
        txn["original_transaction_id"] = payment["id"]
        original["refunded_quantity"] = original["quantity"]
        store = self.store
        store.touch("line_items", original, stamp)
        invoice["refundable_amount"] = round(invoice["refundable_amount"] - amount, 2)
        store.touch("invoices", invoice, stamp)
        payment["refunded"] = True
        store.touch("transactions", payment, stamp)
        return credit

    def _transaction(self, customer: Customer, invoice: dict, ts: int, kind: str, amount: float,
                     success: bool, origin: str, code: str, message: str) -> dict:
        store = self.store
        stamp = iso(ts)
        billing_info = customer.obj.get("billing_info")
        txn = compact({
            "id": store.mint.next_id(),
            "object": "transaction",
            "uuid": store.mint.next_uuid(),
            "original_transaction_id": None,
            "account": customer.mini,
            "invoice": {"id": invoice["id"], "object": "invoice", "number": invoice["number"],
                        "type": invoice["type"]},
            "subscription_ids": invoice["subscription_ids"],
            "type": kind,
            "origin": origin,
            "currency": invoice["currency"],
            "amount": round(amount, 2),
            "status": "success" if success else "declined",
            "success": success,
            "backup_payment_method_used": False,
            "refunded": False,
            "collection_method": "automatic",
            "status_code": code,
            "status_message": message,
            "customer_message": message,
            "customer_message_locale": customer.obj["preferred_locale"],
            "gateway_message": message,
            "gateway_reference": store.mint.next_uuid()[:20],
            "gateway_response_code": "00" if success else "51",
            "created_at": stamp,
            "updated_at": stamp,
            "voided_at": None,
            "collected_at": stamp if success else None,
        })
        if billing_info:
            txn["payment_method"] = billing_info["payment_method"]
        store.add("transactions", txn)
        return txn
