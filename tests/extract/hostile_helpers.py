"""Running the real extraction against a hostile sandbox scenario, and looking for the key everywhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.staging.runlog import RUN_LOG
from recurly_elt.warehouse.engine import create_engine_from_url

from extract_helpers import KEYS, client_for


@dataclass
class Outcome:
    error: BaseException | None
    result: dict | None
    sleeps: list[float]
    client: object
    engine: sa.Engine
    log: str
    run_log: dict = field(default_factory=dict)


def run_scenario(sandbox, warehouse_url: str, name: str | None, caplog, resource: str = "accounts",
                 run_id: str = "hostile", subdomain: str = "acme", max_body_bytes: int | None = None) -> Outcome:
    """Set `name` on the site, extract `resource` through extract_resource, collect what happened."""
    if name is not None:
        sandbox.set_hostile(subdomain, name)
    engine = create_engine_from_url(warehouse_url)
    client = client_for(sandbox, subdomain)
    sleeps: list[float] = []
    client.sleep = sleeps.append  # waits are recorded, not slept: capped waits are asserted on
    if max_body_bytes is not None:
        client.max_body_bytes = max_body_bytes
    caplog.set_level(logging.DEBUG)
    error = result = None
    try:
        result = extract_resource(client, engine, resource, Window(), run_id=run_id, mode="test",
                                  progress_every=3600).as_dict()
    except Exception as exc:  # noqa: BLE001 - what was raised is what the test looks at
        error = exc
    with engine.connect() as conn:
        row = conn.execute(sa.select(RUN_LOG).where(RUN_LOG.c.run_id == run_id,
                                                    RUN_LOG.c.resource == resource)).first()
    return Outcome(error, result, sleeps, client, engine, caplog.text, dict(row._mapping) if row else {})


def warehouse_text(engine: sa.Engine) -> str:
    """Every value of every table of the warehouse, as one text (to grep for a secret)."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


def assert_no_key(outcome: Outcome, key: str = KEYS["acme"]) -> None:
    """The key is in no log line, exception, run-log row, XCom result or warehouse value."""
    import base64
    from urllib.parse import quote

    forms = {key, quote(key, safe=""), base64.b64encode(f"{key}:".encode()).decode()}
    places = {"log": outcome.log, "exception": f"{outcome.error!r} {outcome.error}",
              "xcom": repr(outcome.result), "warehouse": warehouse_text(outcome.engine)}
    for where, text in places.items():
        for form in forms:
            assert form not in text, f"the API key appears in the {where}"
