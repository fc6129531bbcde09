"""The conformance suite every component package registered in ``bulkhead.components`` must pass.

``test_components.py`` says what is checked and the README convention it
expects; ``packages.py`` finds the registered packages and holds the
per-package calls (``CONFORMANCE_CALLS``); ``readme.py`` reads a README's
example blocks.
"""
