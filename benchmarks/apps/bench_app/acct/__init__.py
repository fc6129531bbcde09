"""Accounts for the daemon benchmark (the component is in component.py)."""
