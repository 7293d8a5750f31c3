"""Offline stand-ins of the destination APIs (Braze, Klaviyo): test and try-out equipment, never
used by a production run. `recurly-elt fakes serve braze|klaviyo` (cli.py); docs/destinations.md."""
