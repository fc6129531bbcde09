"""The ledger component: accounts and transfers (client wrapper only; see component.py)."""
