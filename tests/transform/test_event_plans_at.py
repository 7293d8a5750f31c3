"""The plan of an event is its subscription's plan when the event happened."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from recurly_elt.transform.events import _plans_at

EVENTS = pd.DataFrame({"subscription_id": ["s1", "s2"],
                       "occurred_at": pd.to_datetime(["2026-01-02", "2026-01-03"])})
LATEST = pd.DataFrame({"id": ["s1", "s2"], "plan_code": ["gold", "silver"]})


def _snapshots(ids, times, plans, id_dtype):
    return pd.DataFrame({"id": pd.Series(ids, dtype=id_dtype),
                         "observed_updated_at": pd.Series(pd.to_datetime(times), dtype="datetime64[ns]"),
                         "plan_code": pd.Series(plans, dtype=object)})


@pytest.mark.parametrize("id_dtype", [object, "str"])
def test_no_snapshot_yet_falls_back_to_the_staged_subscription(id_dtype):
    # an empty snapshot table reads back with object ids: the lookup must not trip on dtypes
    f = SimpleNamespace(subscription_snapshots=_snapshots([], [], [], id_dtype), subscriptions=LATEST)
    assert _plans_at(f, EVENTS).tolist() == ["gold", "silver"]


@pytest.mark.parametrize("id_dtype", [object, "str"])
def test_a_later_plan_change_does_not_rewrite_an_earlier_event(id_dtype):
    snaps = _snapshots(["s1", "s1"], ["2026-01-01", "2026-01-05"], ["bronze", "gold"], id_dtype)
    f = SimpleNamespace(subscription_snapshots=snaps, subscriptions=LATEST)
    assert _plans_at(f, EVENTS).tolist() == ["bronze", "silver"]


def test_before_the_first_snapshot_the_earliest_one_and_unknown_subscriptions_have_none():
    events = pd.DataFrame({"subscription_id": pd.Series(["s1", "s3", None], dtype="str"),
                           "occurred_at": pd.to_datetime(["2025-12-01", "2026-01-02", "2026-01-02"])})
    snaps = _snapshots(["s1", "s1"], ["2026-01-01", "2026-01-05"], ["bronze", "gold"], "str")
    f = SimpleNamespace(subscription_snapshots=snaps, subscriptions=LATEST)
    plans = _plans_at(f, events)
    assert plans.iloc[0] == "bronze"
    assert plans.iloc[1:].isna().all()
