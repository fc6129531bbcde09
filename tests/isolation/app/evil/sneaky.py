# -*- coding: utf-7 -*-
"""Looks like a docstring; in UTF-7 the next line hides an import."""
+AAo-import os  # noqa
hidden = True
