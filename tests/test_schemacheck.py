"""The coordinator's compiled schema check: never a yes jsonschema would not give, and a yes for real documents."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from components.aggregate.component import TreeNode
from components.rate_limiter.component import Bucket
from components.sharded_counter.component import CounterShard
from runtime.coordinator.kernel.mounts import Mount
from runtime.coordinator.kernel.schemacheck import compile_schema
from runtime.errors import ValidationError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    a: int
    b: list[str] = []


class Note(BaseModel):
    title: str
    body: str | None = None
    tags: list[str] = []
    n: int = 0
    score: float = 0.0
    kind: Literal["a", "b"] = "a"
    color: Color = Color.RED
    inner: Inner | None = None
    meta: dict[str, Any] = {}
    counts: dict[str, int] = {}
    pair: tuple[int, str] = (0, "")
    flag: bool = False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=5, pattern=r"^[a-z]+$")]
    age: Annotated[int, Field(ge=0, lt=150)]
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    kind: Literal[3] = 3


class Tree(BaseModel):
    label: str
    kids: list[Tree] = []


class Cat(BaseModel):
    pet: Literal["cat"]


class Dog(BaseModel):
    pet: Literal["dog"]


class Owner(BaseModel):
    animal: Cat | Dog = Field(discriminator="pet")


MODELS: list[type[BaseModel]] = [Note, Strict, Tree, Inner, CounterShard, Bucket, TreeNode, Owner]
SAMPLES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (Note, {"title": "t"}),
    (Note, {"title": "t", "body": None, "tags": ["x"], "n": 3, "score": 1, "kind": "b", "color": "blue",
            "inner": {"a": 1, "b": ["q"]}, "meta": {"k": [1, {"z": None}]}, "counts": {"a": 1}, "pair": [1, "x"],
            "flag": True}),
    (Strict, {"name": "bob", "age": 3}),
    (Strict, {"name": "bob", "age": 149, "ratio": 1, "kind": 3}),
    (Tree, {"label": "r", "kids": [{"label": "a", "kids": [{"label": "b"}]}]}),
    (CounterShard, {"name": "likes", "value": 2.5, "shard": 3}),
    (Bucket, {"name": "n", "key": None, "shard": 0, "value": 1.0, "ts": 5.0}),
    (TreeNode, {"tree": "t", "items": [[1, "a"]], "children": [], "counts": None, "sums": [1], "agg": None}),
]

VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False, width=32),
              st.sampled_from(["", "a", "bob", "BOB", "toolong", "red", "cat", "t"]), st.binary(max_size=2)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["title", "name", "age", "a", "b", "kids", "label", "value", "shard", "x",
                                         "items", "pet", "animal", "pair", "ratio", "kind"]), inner, max_size=4)),
    max_leaves=10)


def jsonschema_says(model: type[BaseModel], doc: Any) -> bool:
    return bool(jsonschema.Draft202012Validator(model.model_json_schema()).is_valid(doc))


@pytest.mark.parametrize(("model", "doc"), SAMPLES, ids=lambda x: getattr(x, "__name__", ""))
def test_real_documents_take_the_fast_yes(model: type[BaseModel], doc: dict[str, Any]) -> None:
    model.model_validate(doc)
    check = compile_schema(model.model_json_schema())
    assert check is not None and check(doc) and jsonschema_says(model, doc)


def test_a_schema_with_an_unknown_keyword_is_left_to_jsonschema() -> None:
    assert compile_schema(Owner.model_json_schema()) is None  # a discriminated union: oneOf
    assert compile_schema({"type": "object", "patternProperties": {"^x": {}}}) is None
    assert compile_schema({"$ref": "https://example.com/schema"}) is None


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(MODELS), st.one_of(VALUES, st.sampled_from([d for _, d in SAMPLES])), st.data())
def test_the_fast_yes_is_never_wrong(model: type[BaseModel], doc: Any, data: st.DataObject) -> None:
    if isinstance(doc, dict) and data.draw(st.booleans()):  # a near miss of a real document
        doc = {**doc, data.draw(st.sampled_from(["title", "name", "age", "a", "kids", "x"])): data.draw(VALUES)}
    check = compile_schema(model.model_json_schema())
    if check is not None and check(doc):
        assert jsonschema_says(model, doc), (model.__name__, doc)


@pytest.mark.parametrize(("schema", "doc", "valid"), [
    ({"type": "integer"}, 1.0, True),  # jsonschema's integer takes integral floats: not shown valid, then asked
    ({"type": "number"}, True, False),
    ({"enum": [1]}, True, False),
    ({"enum": [1]}, 1.0, True),
    ({"minimum": 3}, True, True),
    ({"maxLength": 2}, b"abc", True),
    ({"required": ["a"]}, [1], True),
])
def test_edge_cases_agree_with_jsonschema_or_defer_to_it(schema: dict[str, Any], doc: Any, valid: bool) -> None:
    assert bool(jsonschema.Draft202012Validator(schema).is_valid(doc)) is valid
    check = compile_schema(schema)
    assert check is not None
    assert not check(doc) or valid


def mount(*models: type[BaseModel]) -> Mount:
    tables = {m.__name__: {"schema": m.model_json_schema(), "indexes": {}} for m in models}
    return Mount(path="m", spec="x", load_spec={}, env={}, manifest={"tables": tables, "functions": {}},
                 children={}, worker=None)  # type: ignore[arg-type]


def test_check_document_still_names_the_bad_field() -> None:
    m = mount(Strict, Owner)
    m.check_document("Strict", {"name": "bob", "age": 3})
    with pytest.raises(ValidationError, match=r"table 'Strict': age: 150 is greater than or equal to"):
        m.check_document("Strict", {"name": "bob", "age": 150})
    with pytest.raises(ValidationError, match=r"table 'Strict': document: Additional properties are not allowed"):
        m.check_document("Strict", {"name": "bob", "age": 3, "evil": 1})
    m.check_document("Owner", {"animal": {"pet": "dog"}})  # no fast check: jsonschema alone
    with pytest.raises(ValidationError, match="table 'Owner'"):
        m.check_document("Owner", {"animal": {"pet": "fish"}})
