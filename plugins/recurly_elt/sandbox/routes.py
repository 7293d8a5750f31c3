"""The API surface: which path serves which resource, as a list, a scoped list or one object.

  /{resource}                          site-level list (accounts, subscriptions, invoices,
                                       line_items, transactions, plans)
  /{resource}/{id}                     one object; {id} may be Recurly's code-/uuid-/number- form
  /accounts/{id}/{child}               an account's subscriptions, invoices, line_items, transactions
  /invoices/{id}/line_items            all of an invoice's line items (the embedded list is truncated)
  /accounts/{id}/coupon_redemptions    the coupon redemptions of an account (its subscriptions' too)
  /invoices/{id}/coupon_redemptions    the coupon redemptions applied to an invoice
  /plans/{id}/add_ons[/{add_on_id}]    a plan's add-ons (add-on id or code-<code>)
  /add_ons[/{add_on_id}]               every add-on of the site (list_add_ons / get_add_on)
  /sites[/{site_id}]                   the sites the key can read: its own site only, so a client can
                                       check which site a key belongs to (list_sites / get_site)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import unquote

from recurly_elt.sandbox import listing
from recurly_elt.sandbox.errors import ApiError, not_found
from recurly_elt.sandbox.index import ResourceIndex, SiteIndex

TOP_LEVEL = ("accounts", "subscriptions", "invoices", "line_items", "transactions", "plans", "add_ons")
# (parent resource, child path segment) -> (child resource, facet linking a child to its parent)
CHILDREN = {
    ("accounts", "subscriptions"): ("subscriptions", "account_id"),
    ("accounts", "invoices"): ("invoices", "account_id"),
    ("accounts", "line_items"): ("line_items", "account_id"),
    ("accounts", "transactions"): ("transactions", "account_id"),
    ("accounts", "coupon_redemptions"): ("coupon_redemptions", "account_id"),
    ("invoices", "coupon_redemptions"): ("coupon_redemptions", None),  # SiteIndex.applied_redemptions
    ("invoices", "line_items"): ("line_items", "invoice_id"),
    ("plans", "add_ons"): ("add_ons", "plan_id"),
}
NAMES = {"accounts": "Account", "subscriptions": "Subscription", "invoices": "Invoice",
         "line_items": "LineItem", "transactions": "Transaction", "plans": "Plan", "add_ons": "AddOn",
         "coupon_redemptions": "CouponRedemption"}


@dataclass
class Response:
    body: bytes = b""
    total: int | None = None  # Recurly-Total-Records, for HEAD on a list


def handle(site: SiteIndex, method: str, path: str, params: list[tuple[str, str]],
           subdomain: str = "sandbox") -> Response:
    """Answer a GET or HEAD on the API (raises ApiError for 400 and 404)."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    top = segments[0]
    if top == "sites" and len(segments) <= 2:
        return _sites(site, subdomain, method, segments[1:], params)
    if top not in TOP_LEVEL or len(segments) > 4 or (top == "add_ons" and len(segments) > 2):
        raise ApiError(404, "not_found", f"The requested URL {path} was not found")
    resource = site.resources[top]
    if len(segments) == 1:
        return _list(site, resource, resource.view, method, path, params)
    parent = _get(resource, segments[1])
    if len(segments) == 2:
        return Response(parent.body)
    child = CHILDREN.get((top, segments[2]))
    if child is None:
        raise ApiError(404, "not_found", f"The requested URL {path} was not found")
    child_index = site.resources[child[0]]
    view = child_index.scoped(child[1], parent.id) if child[1] else site.applied_redemptions(parent.id)
    if len(segments) == 3:
        return _list(site, child_index, view, method, path, params)
    if child[0] != "add_ons":
        raise ApiError(404, "not_found", f"The requested URL {path} was not found")
    ident = segments[3]
    for entry in view.entries:
        if entry.id == ident or ident == f"code-{entry.facets.get('code')}":
            return Response(entry.body)
    raise not_found(NAMES["add_ons"], ident)


def _get(resource: ResourceIndex, ident: str):
    entry = resource.resolve(ident)
    if entry is None:
        raise not_found(NAMES[resource.name], ident)
    return entry


def _list(site: SiteIndex, resource: ResourceIndex, view, method: str, path: str, params) -> Response:
    query = listing.parse_query(resource.name, params)
    if method == "HEAD":
        return Response(total=listing.count(resource, view, query, site))
    return Response(listing.page(path, resource, view, query, site))


def site_object(subdomain: str) -> dict:
    """The Site object of a sandbox site (the spec's Site schema; ids derived from the subdomain)."""
    ident = hashlib.sha256(f"site:{subdomain}".encode()).hexdigest()[:13]
    return {"id": ident, "object": "site", "subdomain": subdomain, "public_api_key": f"ewr1-{ident}",
            "mode": "sandbox", "features": [], "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z", "deleted_at": None}


def _sites(site: SiteIndex, subdomain: str, method: str, rest: list[str], params) -> Response:
    """`/sites`: a key reads its own site only; `/sites/{id}` or `/sites/subdomain-{name}` of it."""
    own = site_object(subdomain)
    if rest:
        if rest[0] not in (own["id"], f"subdomain-{subdomain}"):
            raise not_found("Site", rest[0])
        return Response(json.dumps(own).encode())
    query = listing.parse_query("sites", params)
    chosen = [own] if query.ids is None or own["id"] in query.ids else []
    if method == "HEAD":
        return Response(total=len(chosen))
    body = {"object": "list", "has_more": False, "next": None, "data": chosen}
    return Response(json.dumps(body).encode())
