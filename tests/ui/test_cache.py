"""Answers over the transform's outputs are kept until the transform runs again."""

from __future__ import annotations

from datetime import date, datetime


from recurly_elt.transform.tables import RUN_LOG
from recurly_elt.ui.cache import TransformVersionCache
from recurly_elt.ui.warehouse import Reader
from recurly_elt.warehouse.engine import create_engine_from_url


def test_an_answer_is_kept_until_the_next_transform_run(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    cache = TransformVersionCache(max_entries=2)
    asked = []

    def question(r: Reader, site: str) -> dict:
        asked.append(site)
        return {"site": site, "runs": r.scalar("SELECT COUNT(*) FROM transform_run_log")}

    def ask(site: str = "acme") -> dict:
        with engine.connect() as conn:
            return Reader(conn, cache).kept(question, site)

    def transform_ran() -> None:
        with engine.begin() as conn:
            conn.execute(RUN_LOG.insert().values(site="acme", window_start=date(2025, 1, 1),
                                                 window_end=date(2025, 1, 2), finished_at=datetime(2025, 1, 2)))

    with engine.connect() as conn:
        assert TransformVersionCache.version(conn) is None  # no transform yet: nothing to key on
    RUN_LOG.create(engine)
    transform_ran()
    assert ask() == ask() == {"site": "acme", "runs": 1} and asked == ["acme"]
    transform_ran()
    assert ask() == {"site": "acme", "runs": 2} and asked == ["acme", "acme"]
    ask("globex"), ask("initech")  # bounded: the least recently used goes first
    ask("acme")
    assert asked[-1] == "acme" and (cache.hits, cache.misses) == (1, 5)
    engine.dispose()
