"""Bulkhead's benchmark harness, run by ``bulkhead bench``.

Each ``benchmarks/suite_<name>.py`` module is one *suite*: it exposes ``NAME``,
``DESCRIPTION``, ``ORDER`` and ``run(ctx)``, and records its figures through the
:class:`benchmarks.harness.BenchContext` it is given.  :mod:`benchmarks.runner`
discovers the suites, runs them in ``ORDER`` (the physical limits first, so every
later figure can name a ``limit.*`` measured in the same run as its baseline),
prints one table and optionally writes the JSON described in DESIGN.md
("Command line").  See ``benchmarks/README.md``.
"""
