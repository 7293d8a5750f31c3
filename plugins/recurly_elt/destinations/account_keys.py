"""How a Recurly account is named at a destination: the `account_key` column of every source row.

Two Recurly sites may have the same account codes (they do in `make run`'s sandbox). A destination
fed by several sites needs a key that names the site too, or the second site's customers would
overwrite the first's (the engine sets such rows aside as duplicate keys instead). The mapping's
`account_key` says which key the destination gets:

  account_code        the Recurly account code, as Recurly's own integrations send it
  site_account_code   <site><separator><account code>, e.g. `acme:acct-1` (`separator`, default
                      ":"; CustomerSuccessBox's multi-site form is `site/code`)
  auto (default)      account_code while the warehouse holds one site, site_account_code when it
                      holds several; decided once, at the destination's first delivery, and kept
                      (load_settings; a ledger from before that table counts as account_code):
                      a second site added later does not re-key the destination
                      (it would create every customer again under a new id). The run then warns
                      that the new site's equal codes are set aside, and how to switch on purpose.

An explicit form always applies; one that differs from the form the destination was first
delivered with re-keys it (new objects at the destination, logged as a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from recurly_elt.destinations import ledger
from recurly_elt.destinations.mapping import Mapping

log = logging.getLogger(__name__)

SETTING = "account_key"
COLUMN = "account_key"


@dataclass(frozen=True)
class AccountKeys:
    form: str                      # account_code | site_account_code
    separator: str
    recorded: str | None = None    # the key form the destination was first delivered with (label)
    inferred: bool = False         # ... read from a ledger older than load_settings (plain codes)

    @property
    def label(self) -> str:
        """How the ledger and the logs name the form: `account_code` or `site_account_code ':'`."""
        return self.form if self.form == "account_code" else f"{self.form} {self.separator!r}"

    def value(self, site, code) -> str | None:
        if code is None or (isinstance(code, str) and not code.strip()):
            return None
        return f"{site}{self.separator}{code}" if self.form == "site_account_code" else str(code)

    def add(self, row: dict) -> None:
        """Sets row['account_key'] for a row with account_code (and site) columns."""
        if "account_code" in row:
            row[COLUMN] = self.value(row.get("site"), row["account_code"])

    @property
    def changed(self) -> bool:
        return self.recorded != self.label


def _parse(label: str) -> tuple[str, str]:
    form, _, separator = label.partition(" ")
    return form, (separator[1:-1] if len(separator) >= 2 else ":")


def site_count(conn: sa.Connection) -> int:
    try:
        return int(conn.execute(sa.text("SELECT COUNT(DISTINCT site) FROM stg_accounts")).scalar() or 0)
    except sa.exc.DBAPIError:  # no staged accounts yet: nothing to name
        conn.rollback()
        return 0


def resolve(conn: sa.Connection, mapping: Mapping) -> AccountKeys:
    """The form this run uses (see the module's docstring), with the form recorded before."""
    recorded = ledger.setting(conn, mapping.destination, SETTING)
    inferred = recorded is None and ledger.has_deliveries(conn, mapping.destination)
    if inferred:  # delivered before load_settings existed: always with plain account codes
        recorded = {"value": "account_code", "run_id": "an earlier version's runs"}
    before = recorded["value"] if recorded else None
    sites = site_count(conn)
    separator = mapping.account_key_separator
    if mapping.account_key != "auto":
        form = mapping.account_key
        keys = AccountKeys(form, separator, before, inferred)
        if before and keys.changed:
            log.warning("%s: account_key is %s but the destination was first delivered with %s keys "
                        "(run %s): every account is sent under a new key, the old objects stay at the "
                        "destination", mapping.destination, keys.label, before, recorded["run_id"])
        return keys
    if before:
        form, separator = _parse(before)
        if form == "account_code" and sites > 1:
            log.warning("%s: the warehouse holds %d Recurly sites but the destination was first delivered "
                        "with plain account codes (run %s), kept so as not to re-key it: an account code "
                        "already delivered for another site is set aside as a duplicate key. To deliver "
                        "every site, set account_key.form: site_account_code in %s (every account then gets "
                        "a new key at the destination)", mapping.destination, sites, recorded["run_id"],
                        mapping.path or "the mapping")
    else:
        form = "site_account_code" if sites > 1 else "account_code"
    return AccountKeys(form=form, separator=separator, recorded=before, inferred=inferred)


def record(conn: sa.Connection, mapping: Mapping, keys: AccountKeys, run_id: str) -> None:
    """Called before a run's first request: the destination is now keyed by this form."""
    if keys.changed or keys.inferred:
        ledger.record_setting(conn, mapping.destination, SETTING, keys.label, run_id)
