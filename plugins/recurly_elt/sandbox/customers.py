"""Simulated customers: Account objects with address, tax situation, billing info and custom fields.

Currency and tax follow the country: EU customers pay EUR with VAT (unless they give a VAT number:
reverse charge, no tax), UK customers GBP with VAT, US/Canada customers USD with sales tax in some
states/provinces only. So some invoices carry tax and some do not, and MRR (never taxed) differs
from invoice totals where it should.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date

from recurly_elt.sandbox.timestamps import date_to_ts, iso, year_month
from recurly_elt.sandbox.store import compact

FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
               "Kemi", "Liam", "Mia", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara",
               "Umar", "Vera", "Wen", "Ximena", "Yusuf", "Zoe")
LAST_NAMES = ("Alvarez", "Brown", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes", "Ito",
              "Jensen", "Kowalski", "Lopez", "Müller", "Novak", "O'Brien", "Patel", "Rossi", "Smith",
              "Tanaka", "Usman", "Visser", "Walsh", "Yilmaz", "Zhang")
COMPANY_WORDS = ("Acme", "Blue", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris",
                 "Juniper", "Kite", "Lumen", "Maple", "Nimbus", "Orbit", "Pine", "Quartz", "Rivet")
COMPANY_SUFFIXES = ("Labs", "Studio", "Analytics", "Logistics", "Health", "Foods", "Systems", "Works")
INDUSTRIES = ("software", "retail", "healthcare", "education", "media", "logistics", "finance")
CHANNELS = ("organic", "paid_search", "referral", "partner", "outbound")
CARD_TYPES = (("Visa", "411111"), ("MasterCard", "555555"), ("American Express", "378282"),
              ("Discover", "601111"))


@dataclass(frozen=True)
class Country:
    code: str
    currency: str
    locale: str
    weight: float
    vat: float                 # 0 for sales-tax countries (rate drawn from REGIONS)
    regions: tuple[tuple[str, str, float], ...]  # (region, city, sales tax rate)


COUNTRIES = (
    Country("US", "USD", "en-US", 0.50, 0.0, (("CA", "San Francisco", 0.0725), ("NY", "New York", 0.08875),
                                             ("TX", "Austin", 0.0625), ("WA", "Seattle", 0.065),
                                             ("OR", "Portland", 0.0), ("DE", "Wilmington", 0.0),
                                             ("MT", "Bozeman", 0.0), ("NH", "Concord", 0.0))),
    Country("CA", "USD", "en-CA", 0.05, 0.0, (("ON", "Toronto", 0.13), ("BC", "Vancouver", 0.05))),
    Country("GB", "GBP", "en-GB", 0.15, 0.20, (("ENG", "London", 0.0), ("SCT", "Edinburgh", 0.0))),
    Country("DE", "EUR", "de-DE", 0.12, 0.19, (("BE", "Berlin", 0.0), ("BY", "Munich", 0.0))),
    Country("FR", "EUR", "fr-FR", 0.08, 0.20, (("IDF", "Paris", 0.0), ("ARA", "Lyon", 0.0))),
    Country("NL", "EUR", "nl-NL", 0.05, 0.21, (("NH", "Amsterdam", 0.0),)),
    Country("IE", "EUR", "en-IE", 0.05, 0.23, (("D", "Dublin", 0.0),)),
)
_COUNTRY_WEIGHTS = [c.weight for c in COUNTRIES]
# Price books that include tax (VAT): their line items are tax_inclusive, MRR is net of the tax.
TAX_INCLUSIVE_CURRENCIES = frozenset({"EUR"})


class Customer:
    """Side state of one account that the simulation needs and the API object does not show."""

    __slots__ = ("obj", "mini", "invoice_address", "currency", "tax_rate", "tax_info", "subs", "past_due", "card_exp",
                 "number", "tax_inclusive", "collection_method", "net_terms", "coupons")

    def __init__(self, obj: dict, currency: str, tax_rate: float, tax_info: dict | None, number: int,
                 collection_method: str = "automatic", net_terms: int = 0):
        self.obj = obj
        self.mini = {k: obj[k] for k in ("id", "object", "code", "email", "first_name", "last_name",
                                          "company", "bill_to")}
        self.invoice_address = {"name_on_account": f"{obj['first_name']} {obj['last_name']}",
                                "company": obj["company"], **obj["address"]}
        self.currency = currency
        self.tax_rate = tax_rate
        self.tax_info = tax_info
        self.subs: list = []            # Subscription side states, oldest first
        self.past_due = 0               # number of past-due invoices
        self.card_exp: int | None = None  # epoch seconds when the card stops working
        self.number = number
        self.tax_inclusive = currency in TAX_INCLUSIVE_CURRENCIES
        self.collection_method = collection_method  # "manual": invoiced with net terms, paid by transfer
        self.net_terms = net_terms
        self.coupons: list = []         # (CouponSpec, redemption object) redeemed on the account

    @property
    def has_card(self) -> bool:
        return "billing_info" in self.obj

    def card_valid_at(self, ts: int) -> bool:
        return self.card_exp is not None and ts < self.card_exp


def _email_part(name: str) -> str:
    """"O'Brien" -> "obrien", "Müller" -> "muller": the local part of an email stays ASCII."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalnum())


def new_customer(rng: random.Random, account_id: str, number: int, ts: int, with_card: bool,
                 billing_info_id: str, rates) -> Customer:
    country = rng.choices(COUNTRIES, _COUNTRY_WEIGHTS)[0]
    region, city, sales_tax = rng.choice(country.regions)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    # Individuals have no company: Recurly sends the blank text field as "".
    company = "" if rng.random() < rates.no_company else f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"
    manual = rng.random() < rates.manual_collection
    vat_number = None
    if country.vat:
        # Business customers with a VAT number are reverse-charged: no tax on their invoices.
        if rng.random() < 0.3:
            vat_number = f"{country.code}{rng.randrange(10**8, 10**9)}"
            tax_rate, tax_info = 0.0, None
        else:
            tax_rate = country.vat
            tax_info = {"type": "vat", "region": country.code, "rate": tax_rate}
    elif sales_tax and rng.random() < rates.sales_tax_nexus:
        tax_rate = sales_tax
        tax_info = {"type": "us" if country.code == "US" else "gst", "region": region, "rate": tax_rate}
    else:
        tax_rate, tax_info = 0.0, None
    stamp = iso(ts)
    code = f"acct-{number:06d}"
    email = f"{_email_part(first)}.{_email_part(last)}.{number}@example.com"
    address = compact({
        "phone": f"+1555{number % 10_000_000:07d}",
        "street1": f"{rng.randrange(1, 400)} {rng.choice(COMPANY_WORDS)} Street",
        "street2": None,
        "city": city,
        "region": region,
        "postal_code": f"{rng.randrange(10000, 99999)}",
        "country": country.code,
        "geo_code": None,
    })
    obj = compact({
        "id": account_id,
        "object": "account",
        "state": "active",
        "code": code,
        "username": None,
        "email": email,
        "preferred_locale": country.locale,
        "preferred_time_zone": None,
        "cc_emails": None,
        "first_name": first,
        "last_name": last,
        "company": company,
        "vat_number": vat_number,
        "tax_exempt": False,
        "parent_account_id": None,
        "bill_to": "self",
        "dunning_campaign_id": None,
        "address": address,
        "custom_fields": [
            {"name": "industry", "value": rng.choice(INDUSTRIES)},
            {"name": "acquisition_channel", "value": rng.choice(CHANNELS)},
            {"name": "employees", "value": str(rng.choice((5, 10, 25, 50, 100, 250, 1000)))},
        ],
        "has_live_subscription": False,
        "has_active_subscription": False,
        "has_future_subscription": False,
        "has_canceled_subscription": False,
        "has_paused_subscription": False,
        "has_past_due_invoice": False,
        "created_at": stamp,
        "updated_at": stamp,
        "deleted_at": None,
    })
    customer = Customer(obj, country.currency, tax_rate, tax_info, number,
                        "manual" if manual else "automatic", rates.net_terms_days if manual else 0)
    if with_card:
        attach_card(rng, customer, billing_info_id, ts, fresh=False)
    return customer


def attach_card(rng: random.Random, customer: Customer, billing_info_id: str, ts: int, fresh: bool) -> None:
    """Give the account a (new) card. An existing card at sign-up may already be near expiry;
    a freshly issued replacement card is valid for two to four years."""
    card_type, first_six = rng.choice(CARD_TYPES)
    year, month = year_month(ts)
    months_left = rng.randrange(24, 49) if fresh else rng.randrange(1, 49)
    exp_index = year * 12 + (month - 1) + months_left
    exp_year, exp_month0 = divmod(exp_index, 12)
    obj = customer.obj
    previous = obj.get("billing_info")
    stamp = iso(ts)
    obj["billing_info"] = compact({
        "id": billing_info_id,
        "object": "billing_info",
        "account_id": obj["id"],
        "first_name": obj["first_name"],
        "last_name": obj["last_name"],
        "company": obj["company"],
        "address": obj["address"],
        "vat_number": obj.get("vat_number"),
        "valid": True,
        "payment_method": {
            "object": "credit_card",
            "card_type": card_type,
            "first_six": first_six,
            "last_four": f"{rng.randrange(10000):04d}",
            "exp_month": exp_month0 + 1,
            "exp_year": exp_year,
        },
        "primary_payment_method": True,
        "backup_payment_method": False,
        "created_at": previous["created_at"] if previous else stamp,
        "updated_at": stamp,
    })
    # A card works until the end of its expiry month.
    next_month_year, next_month0 = divmod(exp_index + 1, 12)
    customer.card_exp = date_to_ts(date(next_month_year, next_month0 + 1, 1))
