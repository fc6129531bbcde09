"""The action retrier's pure parts: options, the backoff arithmetic and the non-retryable error (no daemon)."""

from __future__ import annotations

import math

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.action_retrier import NonRetryableError, RetryOptions, is_non_retryable
from components.action_retrier.shared import MAX_DELAY_S, delay, make_options, nominal_delay
from runtime.errors import ComponentError, from_wire


def test_the_defaults_are_the_references() -> None:
    o = RetryOptions()
    assert (o.initial_backoff, o.base, o.max_failures, o.max_attempts, o.jitter) == (0.25, 2.0, 4, 5, True)
    assert [nominal_delay(o, k) for k in range(1, 5)] == [0.25, 0.5, 1.0, 2.0]


def test_initial_backoff_is_the_first_delay() -> None:
    o = make_options(initial_backoff=10, base=3, jitter=False)
    assert [delay(o, k, 0.99) for k in (1, 2, 3)] == [10.0, 30.0, 90.0]


@given(initial=st.floats(0, 1e6), base=st.floats(1, 1000), k=st.integers(1, 1000), u=st.floats(0, 1, exclude_max=True))
def test_jittered_delays_stay_in_half_to_one_and_a_half_of_the_nominal(initial: float, base: float, k: int,
                                                                       u: float) -> None:
    o = RetryOptions(initial_backoff=initial, base=base)
    nominal = nominal_delay(o, k)
    assert 0 <= nominal <= MAX_DELAY_S and math.isfinite(nominal)
    assert 0.5 * nominal <= delay(o, k, u) <= 1.5 * nominal


def test_huge_exponents_are_capped_not_overflowing() -> None:
    assert nominal_delay(RetryOptions(initial_backoff=1, base=1000, max_failures=1000), 1000) == MAX_DELAY_S
    with pytest.raises(ValueError, match="counts from 1"):
        nominal_delay(RetryOptions(), 0)


@pytest.mark.parametrize(("given_", "match"), [
    ({"max_failures": -1}, "max_failures"),
    ({"max_failures": 1.5}, "max_failures"),
    ({"base": 0.9}, "base"),
    ({"initial_backoff": "0.1"}, "initial_backoff must be a number"),
    ({"initial_backoff": True}, "initial_backoff must be a number"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 3, "max_failures": 2}, "not both"),
    ({"log_level": "TRACE"}, "log_level"),
])
def test_bad_options_name_the_option(given_: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_options(**given_)  # type: ignore[arg-type]


def test_options_refuse_unknown_fields_and_keep_defaults() -> None:
    with pytest.raises(pydantic.ValidationError, match="retries"):
        RetryOptions.model_validate({"retries": 3})
    base = make_options(initial_backoff=5)
    assert make_options(max_attempts=2, defaults=base) == RetryOptions(initial_backoff=5, max_failures=1)


def test_a_non_retryable_error_survives_the_wire_as_a_component_error() -> None:
    err = NonRetryableError("bad input", data={"field": "x"})
    back = from_wire(err.to_wire())
    assert type(back) is ComponentError and is_non_retryable(back) and is_non_retryable(err)
    assert back.data == {"kind": "NonRetryable", "message": "bad input", "data": {"field": "x"}}
    assert not is_non_retryable(ComponentError({"kind": "Other"})) and not is_non_retryable(ValueError("x"))
