"""Part of the hunter's package but imported by nothing: not in its worker's closure.

HUNTERUNUSED-0a6f: a marker only this file holds.
"""
