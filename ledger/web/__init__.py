"""The read-only web dashboard (``ledger serve``); static assets ship in ``static/``."""
