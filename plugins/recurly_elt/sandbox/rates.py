"""The behaviour rates of the simulated business: one place to read or tune them.

Monthly rates are converted to a per-period probability for longer or shorter plans
(p_period = 1 - (1 - p_month) ** months_in_period), so an annual subscriber is as likely to
cancel over a year as a monthly one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimulationRates:
    # Sign-ups and subscriptions
    trial_share: float = 0.5                 # of new subscriptions on plans that offer a trial
    trial_without_card: float = 0.4          # of trials started without billing info
    trial_card_added: float = 0.45           # of card-less trials whose owner adds a card (then converts)
    trial_conversion_with_card: float = 0.75  # of trials with a card that convert (others cancel)
    second_subscription: float = 0.35        # of new accounts that add another subscription later
    coupon: float = 0.12                     # of new subscriptions with a recurring coupon of their own
    fixed_coupon: float = 0.25               # of those coupons a fixed amount off instead of a percent
    account_coupon: float = 0.04             # of new accounts redeeming an account coupon at sign-up
    sales_tax_nexus: float = 0.6             # of US/CA accounts in a sales-tax state that are charged it
    no_company: float = 0.1                  # of accounts of individuals (company sent as "")
    manual_collection: float = 0.05          # of accounts invoiced with net terms, paying by transfer
    net_terms_days: int = 30
    manual_paid_late: float = 0.25           # of manual invoices paid after their due date (past due)
    manual_never_paid: float = 0.03          # of manual invoices never paid (the subscription expires)
    future_start: float = 0.03               # of sign-ups whose subscription starts 1-30 days later
    usage_add_on: float = 0.25               # of Pro subscriptions billed a usage add-on in arrears
    api_calls_add_on: float = 0.15           # of Starter/Pro subscriptions with the sub-cent API calls add-on
    pending_downgrade: float = 0.5           # of plan downgrades scheduled for the next renewal
    void_one_time: float = 0.1               # of one-time charges voided by the merchant the same day
    close_after_churn: float = 0.25          # of churned accounts (no win-back) closed by the merchant
    # Per month of service (converted per period)
    cancel_per_month: float = 0.025          # voluntary cancellation (active until period end)
    change_per_month: float = 0.04           # plan or quantity change (prorated immediately)
    upgrade_share: float = 0.6               # of changes that increase the price
    pause_per_month: float = 0.006
    one_time_per_month: float = 0.02         # one-time charges (never MRR)
    # Payments
    decline: float = 0.07                    # a renewal charge declined (card otherwise valid)
    retry_success: float = 0.3               # a dunning retry succeeding (without a card update)
    card_update_in_dunning: float = 0.3      # an expired card replaced during a dunning retry
    card_update_before_expiry: float = 0.65  # a card replaced in the weeks before it expires
    refund: float = 0.01                     # of paid charges refunded within 10 days
    # Win-back
    reactivation: float = 0.12               # of cancellations undone before the period ends
    winback: float = 0.15                    # of churned accounts subscribing again 1-5 months later

    def per_period(self, per_month: float, months: float) -> float:
        return 1.0 - (1.0 - per_month) ** months


DEFAULT_RATES = SimulationRates()

# Dunning: retry offsets (days after the failed renewal) for monthly-or-longer plans; shorter plans
# squeeze the same number of attempts into their period so dunning always ends before the next renewal.
DUNNING_RETRY_DAYS = (3, 7, 12, 16)
