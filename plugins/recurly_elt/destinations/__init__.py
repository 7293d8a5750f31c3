"""The load stage: warehouse rows -> marketing destinations (docs/destinations.md).

One engine (engine.py) over small adapters (braze.py, klaviyo.py) and mapping files
(include/mappings/destinations/<name>.yaml); the ledger (ledger.py) keeps what was delivered,
every request, rejected rows and one row per run in the warehouse.
"""
