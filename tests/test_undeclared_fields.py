"""No silent data changes (issue 18 item 5): a document field its table does not declare is refused, naming
it, and nothing is written; a table whose model allows extra fields keeps them as given.  Before, the
field was dropped without a word.  Through a real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ValidationError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "fields" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


def test_an_undeclared_field_is_refused_by_name_and_nothing_is_written(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        with pytest.raises(ValidationError) as err:
            c.mutation("insert", table="strict", doc={"name": "a", "colour": "red", "weight": 3})
        assert "'colour', 'weight'" in err.value.message and "'strict'" in err.value.message
        assert c.query("docs", table="strict") == []


def test_declared_fields_and_aliases_are_accepted(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("insert", table="strict", doc={"name": "b", "sz": 4})
        assert {"name": "b", "size": 4} in c.query("docs", table="strict")


def test_a_patch_adding_an_undeclared_field_is_refused(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        doc_id = c.mutation("insert", table="strict", doc={"name": "c"})
        with pytest.raises(ValidationError, match="'colour'"):
            c.mutation("patch", id=doc_id, fields={"colour": "red"})
        assert {"name": "c", "size": 0} in c.query("docs", table="strict")


def test_a_model_that_allows_extra_fields_keeps_them(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("insert", table="loose", doc={"name": "d", "colour": "red", "tags": ["x"]})
        assert c.query("docs", table="loose") == [{"name": "d", "colour": "red", "tags": ["x"]}]
