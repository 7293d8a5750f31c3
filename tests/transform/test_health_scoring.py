"""Health a customer-success manager can act on: who is scored, missing metrics, risk caps, and
the per-dimension scores (transform/scoring.py with include/mappings/health.yaml)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from recurly_elt.transform import scoring
from recurly_elt.transform.config import TransformConfig

HEALTHY = {"overdue_amount": 0.0, "overdue_invoice_count": 0, "failed_payments_30d": 0,
           "mrr_trend_30d_pct": 0.0, "mrr_trend_90d_pct": 0.0, "cancellation_scheduled": False,
           "card_expiring_30d": False, "alert_past_due_invoice": False, "alert_failed_payment": False,
           "alert_cancellation_scheduled": False, "alert_card_expires_before_renewal": False,
           "account_status": "active"}


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(TransformConfig.load().health)


def rows(*changes: dict) -> pd.DataFrame:
    return pd.DataFrame([{**HEALTHY, **c} for c in changes])


def scored(frame: pd.DataFrame, config: dict) -> pd.DataFrame:
    return scoring.score(frame, scoring.HealthRules.from_config(config))


def test_metrics_are_graded_and_weighted_per_dimension(config):
    out = scored(rows({}, {"overdue_amount": 500.0, "overdue_invoice_count": 3, "failed_payments_30d": 2,
                          "mrr_trend_30d_pct": -5.0, "mrr_trend_90d_pct": -30.0}), config)
    assert out["health_score"].tolist()[0] == 100.0 and out["health_band"][0] == "Good"
    # billing all Poor (0); growth: 30d Average (60 x 60) + 90d Poor (0) = 36; retention Good (100)
    assert (out["billing_score"][1], out["growth_score"][1], out["retention_score"][1]) == (0.0, 36.0, 100.0)
    assert out["health_score_uncapped"][1] == round((0 * 50 + 36 * 30 + 100 * 20) / 100, 1)


def test_churned_inactive_never_subscribed_and_trialing_accounts_have_no_score(config):
    statuses = ["churned", "inactive", "never_subscribed", "trialing"]
    out = scored(rows(*({"account_status": s, "mrr_trend_30d_pct": np.nan, "mrr_trend_90d_pct": np.nan}
                        for s in statuses)), config)
    assert out["health_band"].tolist() == ["Churned", "Not a customer", "Not a customer", "Trial"]
    assert out[["health_score", "health_score_uncapped", "billing_score", "growth_score"]].isna().all().all()
    assert out["health_capped_by"].isna().all()


def test_a_missing_trend_of_a_new_customer_is_left_out_not_counted_good_or_poor(config):
    new = scored(rows({"mrr_trend_30d_pct": np.nan, "mrr_trend_90d_pct": np.nan, "overdue_amount": 50.0}), config)
    assert np.isnan(new["growth_score"][0])
    # billing: amount Average (60 x 40) + count Good + failed Good = 84; retention 100; (84x50 + 100x20) / 70
    assert new["health_score"][0] == round((84 * 50 + 100 * 20) / 70, 1)
    config["dimensions"]["growth"]["metrics"]["mrr_trend_30d_pct"]["missing"] = "poor"
    assert scored(rows({"mrr_trend_30d_pct": np.nan}), config)["growth_score"][0] == 40.0


@pytest.mark.parametrize("flag, band, top", [
    ("alert_past_due_invoice", "Poor", 50.0), ("alert_failed_payment", "Average", 75.0),
    ("alert_cancellation_scheduled", "Average", 75.0), ("alert_card_expires_before_renewal", "Average", 75.0)])
def test_a_risk_caps_the_band_and_the_score(config, flag, band, top):
    out = scored(rows({flag: True}), config)
    assert out["health_band"][0] == band and out["health_score"][0] == top
    assert out["health_score_uncapped"][0] == 100.0
    assert out["health_capped_by"][0] == flag.removeprefix("alert_")


def test_a_cap_never_raises_a_band_and_names_only_caps_that_lowered_it(config):
    out = scored(rows({"alert_failed_payment": True, "alert_past_due_invoice": True, "overdue_amount": 500.0,
                       "overdue_invoice_count": 1, "failed_payments_30d": 1}), config)
    # billing: 0 x 40 + 60 x 30 + 60 x 30 = 36; growth 100; retention 100: 68 (Average) -> Poor (50)
    assert out["health_score_uncapped"][0] == 68.0
    assert (out["health_band"][0], out["health_score"][0]) == ("Poor", 50.0)
    assert out["health_capped_by"][0] == "past_due_invoice"
    low = scored(rows({"alert_failed_payment": True, "overdue_amount": 500.0, "overdue_invoice_count": 3,
                       "failed_payments_30d": 3, "mrr_trend_30d_pct": -50.0, "mrr_trend_90d_pct": -50.0}), config)
    assert low["health_band"][0] == "Poor" and low["health_score"][0] == low["health_score_uncapped"][0]
    assert low["health_capped_by"].isna().all()


def test_any_poor_metric_makes_the_account_poor_when_enabled(config):
    one_poor = {"mrr_trend_90d_pct": -30.0}
    assert scored(rows(one_poor), config)["health_band"][0] == "Good"
    config["any_poor_metric_is_poor"] = True
    out = scored(rows(one_poor, {}), config)
    assert out["health_band"].tolist() == ["Poor", "Good"]
    assert out["health_capped_by"][0] == "any_poor_metric"


def test_caps_are_configurable(config):
    config["caps"] = {"alert_failed_payment": "Poor"}
    out = scored(rows({"alert_failed_payment": True}, {"alert_cancellation_scheduled": True}), config)
    assert out["health_band"].tolist() == ["Poor", "Good"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c["dimensions"].update(mood={"weight": 1, "metrics": {}}), "dimension 'mood' has no score column"),
    (lambda c: c["caps"].update(alert_failed_payment="Bad"), "cap alert_failed_payment: 'Bad' is not a band"),
    (lambda c: c["dimensions"]["growth"]["metrics"]["mrr_trend_30d_pct"].update(missing="zero"),
     "growth.mrr_trend_30d_pct: missing must be one of"),
])
def test_a_wrong_health_yaml_is_a_clear_error(config, change, message):
    change(config)
    with pytest.raises(scoring.HealthConfigError, match=message):
        scoring.HealthRules.from_config(config)


def test_a_health_table_of_an_older_version_gains_the_new_columns(warehouse_url):
    import sqlalchemy as sa

    from recurly_elt.transform import pipeline
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(warehouse_url)
    pipeline.prepare(engine)
    with engine.begin() as c:
        c.exec_driver_sql("DROP VIEW v_account_health")
        c.exec_driver_sql("ALTER TABLE account_health_daily DROP COLUMN health_capped_by")
    pipeline.prepare(engine)
    columns = {col["name"] for col in sa.inspect(engine).get_columns("account_health_daily")}
    assert {"health_capped_by", "billing_score", "health_score_uncapped"} <= columns
    engine.dispose()
