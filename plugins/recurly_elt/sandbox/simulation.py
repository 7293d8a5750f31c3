"""A deterministic, day-by-day simulation of one Recurly site's subscription business.

    sim = SiteSimulation(subdomain="acme", seed=42, accounts=500,
                         start_date=date(2025, 11, 22), until=date(2026, 11, 22))
    sim.objects["subscriptions"]      # {id: Subscription API object}
    sim.advance(days=1)               # {"subscriptions": 17, "invoices": 21, ...}

The business starts on `start_date` with an empty book and signs up `accounts` new accounts per
365 days, spread evenly over the days (so every day has new business). Everything that happens is
an event in one queue ordered by (time, sequence): sign-ups, trial ends, renewals, dunning retries,
cancellations, plan changes, pauses, refunds, card updates. Handling an event may schedule later
ones. The clock (`now`) is midnight UTC of `until`; every event before it has happened.

Determinism: one seeded RNG is drawn only while handling events, and events are handled in queue
order, so the same arguments give the same objects, and building to D then advancing N days gives
exactly what building to D + N gives. docs/sandbox-data.md describes the rates and what to expect.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from datetime import date, datetime

from recurly_elt.sandbox import customers
from recurly_elt.sandbox.billing import EXPIRED_CARD, INSUFFICIENT_FUNDS, Billing, Charge
from recurly_elt.sandbox.catalog import ADD_ONS, PLANS, Catalog, PlanSpec, local_prices, neighbour_plan
from recurly_elt.sandbox.coupons import ACCOUNT_COUPONS, ALL_COUPONS, COUPONS, FIXED_COUPONS, CouponSpec, redemption_object
from recurly_elt.sandbox.customers import Customer
from recurly_elt.sandbox.ids import derive_seed
from recurly_elt.sandbox.rates import DEFAULT_RATES, DUNNING_RETRY_DAYS, SimulationRates
from recurly_elt.sandbox.store import RESOURCES, SiteStore
from recurly_elt.sandbox.subscriptions import Subscription, new_subscription_object
from recurly_elt.sandbox.timestamps import DAY, add_months, date_to_ts, iso, ts_to_datetime

__all__ = ["SiteSimulation", "SimulationRates", "RESOURCES"]

_PLAN_WEIGHTS = [p.weight for p in PLANS]
_SEATS = (1, 1, 1, 2, 2, 3, 3, 4, 5, 5, 8, 10, 12, 15, 20, 25, 40)
_LIVE = frozenset(("active", "canceled", "future", "paused"))
_API_CALLS = (1000, 2500, 333, 4750, 10_000, 1234)  # calls bought a period: sub-cent prices, odd totals


class SiteSimulation:
    def __init__(self, subdomain: str = "sandbox", seed: int = 42, accounts: int = 500,
                 start_date: date = date(2025, 1, 1), until: date | None = None,
                 rates: SimulationRates = DEFAULT_RATES):
        if accounts < 0:
            raise ValueError(f"site {subdomain!r}: accounts must be >= 0, got {accounts}")
        until = until or start_date
        if until < start_date:
            raise ValueError(f"site {subdomain!r}: until ({until}) is before start_date ({start_date})")
        self.subdomain = subdomain
        self.seed = seed
        self.accounts_per_year = accounts
        self.start_date = start_date
        self.rates = rates
        salt = derive_seed(subdomain, seed)  # same seed, different subdomain -> different data
        self._rng = random.Random(salt)
        # Fixed-amount and account coupons draw from their own stream, so adding them left the rest
        # of the business (sign-ups, renewals, changes) as it was.
        self._coupon_rng = random.Random(derive_seed(subdomain, seed, "coupons"))
        self._store = SiteStore(salt)
        self.objects = self._store.objects
        start_ts = date_to_ts(start_date)
        self._start_ts = start_ts
        self.catalog = Catalog(self._store.mint, start_ts)
        self.objects["plans"].update(self.catalog.plans)
        self.objects["add_ons"].update(self.catalog.add_ons)
        self._coupons = {c.code: c.coupon_object(self._store.mint.next_id(), iso(start_ts)) for c in ALL_COUPONS}
        self._billing = Billing(self._store)
        self._customers: list[Customer] = []
        self._subscriptions: dict[str, Subscription] = {}
        self._queue: list[tuple] = []
        self._seq = 0
        self._now_ts = start_ts
        self.version = 0
        self._schedule(start_ts, self._on_day)
        self._run_until(date_to_ts(until))

    # -- the contract ---------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        """The clock: midnight UTC of the first day not simulated yet (tz-aware)."""
        return ts_to_datetime(self._now_ts)

    def advance(self, days: int = 1) -> dict[str, int]:
        """Simulate `days` more days; returns how many objects per resource were created or updated."""
        if days < 0:
            raise ValueError(f"site {self.subdomain!r}: cannot advance by {days} days")
        self._store.start_tracking()
        try:
            self._run_until(self._now_ts + days * DAY)
        finally:
            counts = self._store.stop_tracking()
        self.version += 1
        return counts

    def iter_objects(self, resource: str) -> Iterator[dict]:
        try:
            return iter(self.objects[resource].values())
        except KeyError:
            raise KeyError(f"unknown sandbox resource {resource!r}; known: {', '.join(RESOURCES)}") from None

    @property
    def invoice_redemptions(self) -> dict[str, tuple[str, ...]]:
        """invoice id -> ids of the coupon redemptions applied to it."""
        return self._store.invoice_redemptions

    def subscription_state(self, subscription_id: str) -> Subscription:
        """The simulation's side state of a subscription (plan spec, coupon, pauses): for tests."""
        return self._subscriptions[subscription_id]

    # -- event queue ----------------------------------------------------------------------------
    def _schedule(self, ts: int, handler: Callable, *args) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (ts, self._seq, handler, args))

    def _run_until(self, end_ts: int) -> None:
        queue = self._queue
        while queue and queue[0][0] < end_ts:
            ts, _, handler, args = heapq.heappop(queue)
            handler(ts, *args)
        self._now_ts = end_ts

    def _at_random_time_between(self, start: int, end: int) -> int:
        return start + int(self._rng.random() * max(1, end - start))

    # -- sign-ups -------------------------------------------------------------------------------
    def _on_day(self, ts: int) -> None:
        """Midnight: schedule the day's sign-ups at random times, and tomorrow's midnight."""
        k = (ts - self._start_ts) // DAY
        n = self.accounts_per_year
        for _ in range(n * (k + 1) // 365 - n * k // 365):
            self._schedule(ts + self._rng.randrange(DAY), self._on_signup)
        self._schedule(ts + DAY, self._on_day)

    def _on_signup(self, ts: int) -> None:
        rng, rates, store = self._rng, self.rates, self._store
        plan = rng.choices(PLANS, _PLAN_WEIGHTS)[0]
        trial = plan.trial_days > 0 and rng.random() < rates.trial_share
        with_card = not trial or rng.random() >= rates.trial_without_card
        number = len(self._customers) + 1
        customer = customers.new_customer(rng, store.mint.next_id(), number, ts, with_card,
                                          store.mint.next_id(), rates)
        self._customers.append(customer)
        store.add("accounts", customer.obj)
        if with_card:
            self._schedule_card_check(customer, ts)
        if self._coupon_rng.random() < rates.account_coupon:
            self._redeem(customer, self._coupon_rng.choice(ACCOUNT_COUPONS), None, ts)
        self._start_subscription(customer, plan, ts, trial)
        if rng.random() < rates.second_subscription:
            self._schedule(ts + rng.randrange(10, 120) * DAY + rng.randrange(DAY), self._on_new_subscription,
                           customer)

    def _on_new_subscription(self, ts: int, customer: Customer) -> None:
        """Another subscription for an existing account (expansion or a churned account's win-back);
        a different plan from those it already has live."""
        if not customer.has_card or customer.obj["state"] != "active":
            return
        live = {s.plan.code for s in customer.subs if s.state in _LIVE}
        options = [p for p in PLANS if p.code not in live]
        plan = self._rng.choices(options, [p.weight for p in options])[0]
        self._start_subscription(customer, plan, ts, trial=False)

    def _start_subscription(self, customer: Customer, plan: PlanSpec, ts: int, trial: bool) -> None:
        rng, rates, store = self._rng, self.rates, self._store
        stamp = iso(ts)
        quantity = rng.choice(_SEATS) if plan.seat_based else 1
        add_ons = {}
        for code in plan.add_on_codes:
            spec = ADD_ONS[code]
            if spec.usage:
                continue  # billed in arrears, see Subscription.usage
            if spec.decimal_price:
                if rng.random() < rates.api_calls_add_on:
                    add_ons[code] = rng.choice(_API_CALLS)
            elif rng.random() < 0.2:
                add_ons[code] = (rng.randint(2, 2 * spec.max_quantity) / 2 if spec.decimal_quantity
                                 else rng.randint(1, spec.max_quantity))
        coupon = rng.choice(COUPONS) if rng.random() < rates.coupon else None
        if coupon is not None and self._coupon_rng.random() < rates.fixed_coupon:
            coupon = self._coupon_rng.choice(FIXED_COUPONS)
        custom_fields = [{"name": "sales_channel", "value": rng.choice(("self_serve", "self_serve", "sales"))}]
        if rng.random() < 0.3:
            custom_fields.append({"name": "contract_ref", "value": f"C-{customer.number:06d}-{len(customer.subs) + 1}"})
        obj = new_subscription_object(store.mint.next_id(), store.mint.next_uuid(), customer, self.catalog,
                                      plan, stamp, custom_fields)
        sub = Subscription(obj, customer, plan, quantity, add_ons, coupon)
        sub.reprice(self.catalog, stamp, store.mint)
        if coupon:
            obj["coupon_redemptions"] = [self._redeem(customer, coupon, sub, ts)]
        sub.usage = "api-overage" in plan.add_on_codes and rng.random() < rates.usage_add_on
        customer.subs.append(sub)
        self._subscriptions[sub.id] = sub
        store.add("subscriptions", obj)
        if not trial and rng.random() < rates.future_start:
            # Starts on a later date: state future, nothing billed until then.
            starts = ts + rng.randrange(1, 31) * DAY
            obj["state"] = "future"
            for key in ("activated_at", "current_period_started_at", "current_period_ends_at"):
                obj.pop(key, None)
            self._schedule(starts, self._on_future_start, sub)
            self._refresh_account(customer, stamp)
            return
        if trial:
            sub.in_trial = True
            trial_end = ts + plan.trial_days * DAY
            obj["trial_started_at"], obj["trial_ends_at"] = stamp, iso(trial_end)
            sub.period_start, sub.period_end = ts, trial_end
            sub.show_period(ts, trial_end)
            self._billing.issue(customer, ts, "purchase", sub.charges(self.catalog, ts, trial_end, trial=True),
                                [sub.id])
            self._schedule(trial_end, self._on_period_end, sub, sub.epoch)
            if not customer.has_card:
                if rng.random() < rates.trial_card_added:
                    self._schedule(self._at_random_time_between(ts, trial_end), self._on_card_added, customer)
            elif rng.random() >= rates.trial_conversion_with_card:
                self._schedule(self._at_random_time_between(ts, trial_end), self._on_cancel, sub, sub.epoch)
        else:
            sub.start_period(anchor=ts)
            self._bill_period(sub, ts, "purchase", first=True)
        self._refresh_account(customer, stamp)

    def _on_future_start(self, ts: int, sub: Subscription) -> None:
        obj, stamp = sub.obj, iso(ts)
        if obj["state"] != "future":
            return
        obj["state"], obj["activated_at"] = "active", stamp
        sub.start_period(anchor=ts)
        self._store.touch("subscriptions", obj, stamp)
        self._refresh_account(sub.customer, stamp)
        self._bill_period(sub, ts, "purchase", first=True)

    # -- periods: renewal, trial end, expiry, pause ---------------------------------------------
    def _bill_period(self, sub: Subscription, ts: int, origin: str, first: bool = False) -> None:
        """Invoice the current period and collect it; plan what happens during the period."""
        customer, rates, rng = sub.customer, self.rates, self._rng
        stamp = iso(ts)
        applied = sub.pending is not None
        if applied:  # a change scheduled for this renewal
            sub.plan, sub.quantity, sub.add_ons = sub.pending
            sub.pending = None
            sub.obj.pop("pending_change", None)
        sub.cycles += 1
        if sub.plan.ramp or applied:
            sub.reprice(self.catalog, stamp, self._store.mint)
            self._store.touch("subscriptions", sub.obj, stamp)
        coupon, redemption = self._coupon_for(sub, ts)
        charges = sub.charges(self.catalog, sub.period_start, sub.period_end, coupon=coupon)
        usage = sub.usage_charge(self.catalog, rng.randrange(0, 50_000)) if not first else None
        if usage is not None:
            charges.append(usage)
        sub.last_period = (sub.period_start, sub.period_end)
        invoice = self._billing.issue(customer, ts, origin, charges, [sub.id])
        self._applied(redemption, invoice, ts)
        # A fixed-amount coupon may take the whole charge: the invoice is paid at once, nothing is
        # collected, but its collection's draws are made all the same (the manual payment's events and
        # a refund find nothing to do on it), so that coupons leave the rest of the business as it was.
        free = invoice["state"] == "paid" and invoice["discount"] > 0
        if invoice["state"] == "pending" or free:
            if customer.collection_method == "manual":
                self._schedule_manual_payment(sub, invoice, ts)
            else:
                card_ok = customer.card_valid_at(ts)
                approved = first or (card_ok and rng.random() >= rates.decline)
                if not free:
                    self._billing.collect(customer, invoice, ts, approved,
                                          INSUFFICIENT_FUNDS if card_ok else EXPIRED_CARD,
                                          origin="api" if first else "recurring")
                if approved:
                    if rng.random() < rates.refund:
                        self._schedule(ts + rng.randrange(DAY, 10 * DAY), self._on_refund, customer, invoice)
                elif not free:
                    self._start_dunning(sub, invoice, ts)
        self._schedule(sub.period_end, self._on_period_end, sub, sub.epoch)
        self._plan_period_action(sub, ts)

    def _schedule_manual_payment(self, sub: Subscription, invoice: dict, ts: int) -> None:
        """Manual collection: the customer pays by transfer within the net terms, late (the invoice
        is past due from its due date), or never (it fails 30 days after the due date)."""
        rng, rates = self._rng, self.rates
        due = ts + sub.customer.net_terms * DAY
        roll = rng.random()
        if roll < rates.manual_never_paid:
            self._schedule(due, self._on_manual_due, sub, invoice)
            self._schedule(due + 30 * DAY, self._on_manual_unpaid, sub, invoice)
        elif roll < rates.manual_never_paid + rates.manual_paid_late:
            self._schedule(due, self._on_manual_due, sub, invoice)
            self._schedule(due + rng.randrange(1, 21) * DAY + rng.randrange(DAY), self._on_manual_paid, sub, invoice)
        else:
            self._schedule(ts + rng.randrange(0, sub.customer.net_terms) * DAY + rng.randrange(DAY),
                           self._on_manual_paid, sub, invoice)

    def _on_manual_due(self, ts: int, sub: Subscription, invoice: dict) -> None:
        if invoice["state"] != "pending":
            return
        invoice["state"] = "past_due"
        self._store.touch("invoices", invoice, iso(ts))
        sub.customer.past_due += 1
        self._refresh_account(sub.customer, iso(ts))

    def _on_manual_paid(self, ts: int, sub: Subscription, invoice: dict) -> None:
        if invoice["state"] not in ("pending", "past_due"):
            return
        late = invoice["state"] == "past_due"
        self._billing.collect(sub.customer, invoice, ts, True, origin="api")
        if late:
            sub.customer.past_due -= 1
            self._refresh_account(sub.customer, iso(ts))

    def _on_manual_unpaid(self, ts: int, sub: Subscription, invoice: dict) -> None:
        if invoice["state"] != "past_due":
            return
        self._billing.dunning_notice(invoice, ts, final=True)
        sub.customer.past_due -= 1
        if sub.state in ("active", "canceled"):
            self._expire(sub, ts, "nonpayment")
        else:
            self._refresh_account(sub.customer, iso(ts))

    def _plan_period_action(self, sub: Subscription, ts: int) -> None:
        """At most one customer action per period, at a random time within it."""
        rng, rates, months = self._rng, self.rates, sub.plan.months
        when = self._at_random_time_between(ts, sub.period_end)
        if rng.random() < rates.per_period(rates.cancel_per_month, months):
            self._schedule(when, self._on_cancel, sub, sub.epoch)
        elif rng.random() < rates.per_period(rates.change_per_month, months):
            self._schedule(when, self._on_change, sub, sub.epoch)
        elif rng.random() < rates.per_period(rates.pause_per_month, months):
            self._schedule(when, self._on_pause_requested, sub, sub.epoch)
        elif rng.random() < rates.per_period(rates.one_time_per_month, months):
            self._schedule(when, self._on_one_time_charge, sub, sub.epoch)

    def _on_period_end(self, ts: int, sub: Subscription, epoch: int) -> None:
        if epoch != sub.epoch:
            return
        obj = sub.obj
        if sub.in_trial:
            if obj["state"] == "canceled":
                self._expire(sub, ts, "canceled")
            elif sub.customer.has_card:
                sub.in_trial = False
                obj["converted_at"] = iso(ts)
                sub.start_period(anchor=ts)
                self._store.touch("subscriptions", obj, iso(ts))
                self._bill_period(sub, ts, "renewal")
            else:
                self._expire(sub, ts, "nonpayment_trial")
        elif obj["state"] == "canceled":
            self._expire(sub, ts, "canceled")
        elif sub.pause_cycles:
            obj["state"] = "paused"
            sub.epoch += 1
            self._store.touch("subscriptions", obj, iso(ts))
            self._refresh_account(sub.customer, iso(ts))
            # The first paused cycle is the next period on the anchor's calendar; each cycle's end
            # counts the pause down, and the last one resumes the subscription.
            sub.period_no += 1
            self._schedule(sub.edge(sub.period_no + 1), self._on_pause_cycle, sub, sub.epoch)
        else:
            sub.start_period()
            self._store.touch("subscriptions", obj, iso(ts))
            self._bill_period(sub, ts, "renewal")

    def _on_pause_cycle(self, ts: int, sub: Subscription, epoch: int) -> None:
        if epoch != sub.epoch:
            return
        obj, stamp = sub.obj, iso(ts)
        sub.pause_cycles -= 1
        sub.period_no += 1
        if sub.pause_cycles > 0:
            obj["remaining_pause_cycles"] = sub.pause_cycles
            self._store.touch("subscriptions", obj, stamp)
            self._schedule(sub.edge(sub.period_no + 1), self._on_pause_cycle, sub, sub.epoch)
            return
        # Resume: a new billing anchor from today.
        obj["state"] = "active"
        del obj["paused_at"], obj["remaining_pause_cycles"]
        sub.epoch += 1
        sub.start_period(anchor=ts)
        self._store.touch("subscriptions", obj, stamp)
        self._refresh_account(sub.customer, stamp)
        self._bill_period(sub, ts, "renewal")

    def _expire(self, sub: Subscription, ts: int, reason: str) -> None:
        obj, stamp, customer = sub.obj, iso(ts), sub.customer
        obj["state"] = "expired"
        obj["expiration_reason"] = reason
        obj["expires_at"] = stamp
        sub.epoch += 1
        self._store.touch("subscriptions", obj, stamp)
        self._refresh_account(customer, stamp)
        if reason != "nonpayment_trial" and not any(s.state in _LIVE for s in customer.subs):
            if self._rng.random() < self.rates.winback:
                self._schedule(ts + self._rng.randrange(30, 150) * DAY + self._rng.randrange(DAY),
                               self._on_new_subscription, customer)
            elif self._rng.random() < self.rates.close_after_churn:  # the merchant closes the account
                customer.obj["state"] = "inactive"
                self._store.touch("accounts", customer.obj, stamp)

    # -- customer actions -----------------------------------------------------------------------
    def _on_cancel(self, ts: int, sub: Subscription, epoch: int) -> None:
        obj = sub.obj
        if epoch != sub.epoch or obj["state"] != "active":
            return
        stamp = iso(ts)
        obj["state"] = "canceled"
        obj["canceled_at"] = stamp
        obj["expires_at"] = iso(sub.period_end)
        self._store.touch("subscriptions", obj, stamp)
        self._refresh_account(sub.customer, stamp)
        if not sub.in_trial and self._rng.random() < self.rates.reactivation:
            self._schedule(self._at_random_time_between(ts, sub.period_end), self._on_reactivate, sub, epoch)

    def _on_reactivate(self, ts: int, sub: Subscription, epoch: int) -> None:
        obj = sub.obj
        if epoch != sub.epoch or obj["state"] != "canceled" or ts >= sub.period_end:
            return
        stamp = iso(ts)
        obj["state"] = "active"
        del obj["canceled_at"], obj["expires_at"]
        self._store.touch("subscriptions", obj, stamp)
        self._refresh_account(sub.customer, stamp)

    def _on_change(self, ts: int, sub: Subscription, epoch: int) -> None:
        """Upgrade, downgrade or quantity change, effective now: credit the unused part of the old
        configuration, charge the new one for the rest of the period (origin immediate_change)."""
        if epoch != sub.epoch or sub.obj["state"] != "active" or sub.in_trial:
            return
        rng = self._rng
        upgrade = rng.random() < self.rates.upgrade_share
        plan, quantity, add_ons = sub.plan, sub.quantity, dict(sub.add_ons)
        step = 1 if upgrade else -1
        neighbour = neighbour_plan(plan, step)
        if plan.seat_based and (neighbour is None or rng.random() < 0.5) and (upgrade or quantity > 1):
            quantity = quantity + rng.randint(1, 5) if upgrade else max(1, quantity - rng.randint(1, 3))
        elif neighbour is not None:
            plan = neighbour
            add_ons = {c: q for c, q in add_ons.items() if c in plan.add_on_codes}
            if not plan.seat_based:
                quantity = 1
        elif upgrade and (missing := [c for c in plan.add_on_codes if c not in add_ons]):
            add_ons[rng.choice(missing)] = 1
        elif not upgrade and add_ons:
            add_ons.pop(rng.choice(sorted(add_ons)))
        else:
            return
        if not upgrade and plan is not sub.plan and self._rng.random() < self.rates.pending_downgrade:
            # A downgrade at renewal: shown as the subscription's pending change until then.
            stamp = iso(ts)
            sub.pending = (plan, quantity, add_ons)
            sub.obj["pending_change"] = {
                "id": self._store.mint.next_id(), "object": "subscription_change", "subscription_id": sub.id,
                "activate_at": iso(sub.period_end), "activated": False,
                "plan": self.catalog.plan_minis[plan.code], "unit_amount": float(plan.prices[sub.customer.currency]),
                "quantity": quantity, "created_at": stamp, "updated_at": stamp}
            self._store.touch("subscriptions", sub.obj, stamp)
            return
        proration = round((sub.period_end - ts) / (sub.period_end - sub.period_start), 6)
        coupon, redemption = self._coupon_for(sub, ts)
        charges = sub.charges(self.catalog, ts, sub.period_end, proration=proration, credit=True, coupon=coupon)
        sub.plan, sub.quantity, sub.add_ons = plan, quantity, add_ons
        charges += sub.charges(self.catalog, ts, sub.period_end, proration=proration, coupon=coupon)
        stamp = iso(ts)
        sub.reprice(self.catalog, stamp, self._store.mint)
        self._store.touch("subscriptions", sub.obj, stamp)
        customer = sub.customer
        invoice = self._billing.issue(customer, ts, "immediate_change", charges, [sub.id])
        self._applied(redemption, invoice, ts)
        if invoice["state"] == "pending":
            self._billing.collect(customer, invoice, ts, True, origin="api")

    def _on_pause_requested(self, ts: int, sub: Subscription, epoch: int) -> None:
        obj = sub.obj
        if epoch != sub.epoch or obj["state"] != "active" or sub.in_trial:
            return
        sub.pause_cycles = self._rng.randint(1, 3)
        sub.pauses += 1
        obj["paused_at"] = iso(sub.period_end)
        obj["remaining_pause_cycles"] = sub.pause_cycles
        self._store.touch("subscriptions", obj, iso(ts))

    def _on_one_time_charge(self, ts: int, sub: Subscription, epoch: int) -> None:
        if epoch != sub.epoch or sub.obj["state"] not in ("active", "canceled"):
            return
        description, usd = self._rng.choice((("Onboarding session", 150.0), ("Data import service", 300.0),
                                             ("Extra report pack", 40.0)))
        amount = local_prices(usd)[sub.customer.currency]
        charges = [Charge("one_time", float(amount), 1, description, sub.id, product_code="services")]
        if sub.customer.collection_method == "manual":
            # Invoiced customers get itemised services: one line per consulting day, often more
            # lines than an invoice embeds (has_more_line_items).
            day_rate = local_prices(120.0)[sub.customer.currency]
            charges += [Charge("one_time", float(day_rate), 1, f"Consulting, day {n}", sub.id, product_code="consulting")
                        for n in range(1, self._rng.randint(4, 15))]
        invoice = self._billing.issue(sub.customer, ts, "purchase", charges, [sub.id])
        if self._rng.random() < self.rates.void_one_time:  # charged by mistake: voided the same day
            invoice["state"], invoice["balance"] = "voided", 0.0
            invoice["closed_at"] = iso(ts + 3600)
            self._store.touch("invoices", invoice, iso(ts + 3600))
            return
        self._billing.collect(sub.customer, invoice, ts, True, origin="api")

    def _on_refund(self, ts: int, customer: Customer, invoice: dict) -> None:
        self._billing.refund(customer, invoice, ts)

    # -- coupons --------------------------------------------------------------------------------
    def _redeem(self, customer: Customer, spec: CouponSpec, sub: Subscription | None, ts: int) -> dict:
        """Redeem a coupon on the account (sub None) or on a subscription; a temporal one ends later."""
        store, stamp = self._store, iso(ts)
        discounted = 0.0 if sub is None else round(sub.obj["subtotal"] - sub.obj["total"] + sub.obj["tax"], 2)
        redemption = redemption_object(store.mint.next_id(), spec, self._coupons[spec.code], customer.mini,
                                       customer.currency, sub.id if sub else None, stamp, discounted)
        store.add("coupon_redemptions", redemption)
        if sub is None:
            customer.coupons.append((spec, redemption))
            if spec.duration == "temporal":
                self._schedule(add_months(ts, spec.months), self._on_coupon_ends, redemption)
        return redemption

    def _coupon_for(self, sub: Subscription, ts: int) -> tuple[CouponSpec | None, dict | None]:
        """The coupon discounting the subscription's invoice now: its own, else the account's first
        active one (with its redemption, to record where it applied)."""
        if sub.coupon is not None:
            return sub.coupon, sub.obj["coupon_redemptions"][0]
        for spec, redemption in sub.customer.coupons:
            if redemption["state"] == "active":
                return spec, redemption
        return None, None

    def _applied(self, redemption: dict | None, invoice: dict, ts: int) -> None:
        """The invoice lists the redemption; a single-use one is used up by its first invoice."""
        if redemption is None or not any(li["discount"] for li in invoice["line_items"]):
            return
        self._store.applied(invoice["id"], redemption["id"])
        if "subscription_id" not in redemption:
            redemption["discounted"] = round(redemption["discounted"] + max(0.0, invoice["discount"]), 2)
            if self._coupons[redemption["coupon"]["code"]]["duration"] == "single_use":
                redemption["state"] = "inactive"
            self._store.touch("coupon_redemptions", redemption, iso(ts))

    def _on_coupon_ends(self, ts: int, redemption: dict) -> None:
        redemption["state"] = "inactive"
        self._store.touch("coupon_redemptions", redemption, iso(ts))

    # -- payments: dunning and cards ------------------------------------------------------------
    def _start_dunning(self, sub: Subscription, invoice: dict, ts: int) -> None:
        customer = sub.customer
        customer.past_due += 1
        self._refresh_account(customer, iso(ts))
        period_days = (sub.period_end - sub.period_start) / DAY
        scale = min(1.0, (period_days - 1) / (DUNNING_RETRY_DAYS[-1] + 1))
        offsets, last = [], 0
        for d in DUNNING_RETRY_DAYS:
            last = max(last + 1, round(d * scale)) if scale < 1 else d
            offsets.append(last)
        self._schedule(ts + offsets[0] * DAY, self._on_dunning_retry, sub, invoice, tuple(offsets), 0)

    def _on_dunning_retry(self, ts: int, sub: Subscription, invoice: dict, offsets: tuple, attempt: int) -> None:
        if invoice["state"] != "past_due":
            return
        customer, rng, rates, stamp = sub.customer, self._rng, self.rates, iso(ts)
        if not customer.card_valid_at(ts) and rng.random() < rates.card_update_in_dunning:
            self._replace_card(customer, ts)
        card_ok = customer.card_valid_at(ts)
        approved = card_ok and rng.random() < rates.retry_success
        self._billing.collect(customer, invoice, ts, approved, INSUFFICIENT_FUNDS if card_ok else EXPIRED_CARD)
        final = attempt + 1 == len(offsets)
        if approved:
            customer.past_due -= 1
            self._refresh_account(customer, stamp)
            return
        self._billing.dunning_notice(invoice, ts, final)
        if final:
            customer.past_due -= 1
            if sub.state in ("active", "canceled"):
                self._expire(sub, ts, "nonpayment")
            else:
                self._refresh_account(customer, stamp)
        else:
            start = ts - offsets[attempt] * DAY
            self._schedule(start + offsets[attempt + 1] * DAY, self._on_dunning_retry, sub, invoice, offsets,
                           attempt + 1)

    def _schedule_card_check(self, customer: Customer, ts: int) -> None:
        """Some weeks before the card expires, its owner may replace it."""
        if customer.card_exp is None:
            return
        check = customer.card_exp - self._rng.randrange(DAY, 45 * DAY)
        self._schedule(max(check, ts + 3600), self._on_card_check, customer, customer.card_exp)

    def _on_card_check(self, ts: int, customer: Customer, card_exp: int) -> None:
        if customer.card_exp != card_exp or not any(s.state in _LIVE for s in customer.subs):
            return
        if self._rng.random() < self.rates.card_update_before_expiry:
            self._replace_card(customer, ts)

    def _on_card_added(self, ts: int, customer: Customer) -> None:
        self._replace_card(customer, ts)

    def _replace_card(self, customer: Customer, ts: int) -> None:
        obj, stamp = customer.obj, iso(ts)
        billing_info = obj.get("billing_info")
        customers.attach_card(self._rng, customer, billing_info["id"] if billing_info else self._store.mint.next_id(),
                              ts, fresh=True)
        self._store.touch("accounts", obj, stamp)
        for sub in customer.subs:
            if "billing_info_id" not in sub.obj:
                sub.obj["billing_info_id"] = obj["billing_info"]["id"]
                self._store.touch("subscriptions", sub.obj, stamp)
        self._schedule_card_check(customer, ts)

    # -- account flags --------------------------------------------------------------------------
    def _refresh_account(self, customer: Customer, stamp: str) -> None:
        """Keep the account's has_* flags true to its subscriptions and invoices."""
        states = {s.obj["state"] for s in customer.subs}
        obj = customer.obj
        flags = {
            "has_live_subscription": bool(states & _LIVE),
            "has_active_subscription": "active" in states,
            "has_future_subscription": "future" in states,
            "has_canceled_subscription": "canceled" in states,
            "has_paused_subscription": "paused" in states,
            "has_past_due_invoice": customer.past_due > 0,
        }
        if any(obj[k] != v for k, v in flags.items()):
            obj.update(flags)
            self._store.touch("accounts", obj, stamp)
