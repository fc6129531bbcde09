"""The authoring API fails at definition time with errors that name the mistake (no daemon needed)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from runtime import App, Component, ComponentError
from runtime.errors import ValidationError


def test_functions_are_checked_when_they_are_declared() -> None:
    app = App()

    @app.query
    async def fine(ctx, a: int, b: str = "x") -> int:
        return a

    with pytest.raises(ValueError, match="'fine' is defined twice"):
        @app.query
        async def fine(ctx) -> None: ...

    with pytest.raises(TypeError, match="must be declared 'async def'"):
        @app.mutation
        def not_async(ctx) -> None: ...

    with pytest.raises(TypeError, match="'p' must be passable by keyword"):
        @app.mutation
        async def positional(ctx, p, /) -> None: ...

    with pytest.raises(TypeError, match=r"\*\*rest is not allowed"):
        @app.action
        async def catch_all(ctx, **rest) -> None: ...

    with pytest.raises(TypeError, match="ctx as its first parameter"):
        @app.query
        async def no_ctx() -> None: ...


def test_arguments_and_returns_are_validated_by_name() -> None:
    app = App()

    @app.query
    async def f(ctx, a: int, b: str, c: list[int] = []) -> str:  # noqa: B006
        return "x"

    with pytest.raises(ValidationError) as info:
        f.validate_args({"a": "1", "b": 2, "d": 0})
    issues = info.value.issues
    assert any(i.startswith("a:") for i in issues) and any(i.startswith("b:") for i in issues)
    assert any(i.startswith("d:") for i in issues)  # unknown arguments are refused by name
    assert f.validate_args({"a": 1, "b": "y"}) == {"a": 1, "b": "y", "c": []}
    with pytest.raises(ValidationError, match="returned an invalid value"):
        f.validate_return(5)


def test_tables_and_indexes_are_checked() -> None:
    c = Component("shop")

    class Item(BaseModel):
        name: str
        price: float

    c.table("items", indexes={"by_price": ["price"]})(Item)
    with pytest.raises(ValueError, match="declared twice"):
        c.table("items")
    with pytest.raises(ValueError, match="unknown field 'cost'"):
        c.table("other", indexes={"by_cost": ["cost"]})(Item)
    with pytest.raises(ValueError, match="reserved"):
        c.table("third", indexes={"by_id": ["name"]})(Item)
    with pytest.raises(ValueError, match="table name '_hidden' is invalid"):
        c.table("_hidden")
    with pytest.raises(TypeError, match="pydantic BaseModel"):
        c.table("plain")(dict)
    with pytest.raises(ValidationError, match="price"):
        c.tables["items"].validate({"name": "x", "price": "free"})


def test_use_takes_an_import_path_and_distinct_names() -> None:
    app = App()
    likes = app.use("components.sharded_counter", name="likes")
    assert likes.add.path == "likes" and likes.add.name == "add"
    app.use("components.sharded_counter")  # default name: the last part of the path
    assert "sharded_counter" in app.children
    with pytest.raises(ValueError, match="already mounted as 'likes'"):
        app.use("other.pkg", name="likes")
    with pytest.raises(TypeError, match="import path or registered name"):
        app.use(Component("x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mount name"):
        app.use("pkg", name="bad name")
    with pytest.raises(TypeError, match="strings"):
        app.use("pkg", name="ok", env={"K": 1})  # type: ignore[dict-item]


def test_component_error_keeps_its_data() -> None:
    err = ComponentError({"code": "x", "n": [1, 2]})
    assert err.data == {"code": "x", "n": [1, 2]} and err.code == "component_error"
