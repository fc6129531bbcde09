"""The store test component (no client wrapper: the app calls its refs directly)."""
