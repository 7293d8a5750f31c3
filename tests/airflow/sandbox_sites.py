"""The small two-site sandbox the Airflow tests run against.

Kept out of conftest.py so test modules can import it by a name no other folder uses: a bare
`from conftest import ...` resolves to whichever conftest pytest imported first, and failed
collection when tests/airflow was selected together with another folder that has one.
"""

from known_keys import DAGS as SANDBOX_KEYS  # noqa: E402 (the one registry of the suite's keys)
SANDBOX_DATES = ("2025-01-01", "2025-03-10")  # history start, clock day
SANDBOX_ACCOUNTS = 25
