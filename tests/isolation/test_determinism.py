"""Queries and mutations see frozen time and seeded randomness whichever module they use;
sleeping is refused with DeterminismError; actions get the real clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import DeterminismError

APP = Path(__file__).parent.parent / "apps" / "det"


@pytest.fixture(scope="module")
def client(module_daemon_for):
    with module_daemon_for(APP).client() as c:
        yield c


def test_time_is_frozen_at_the_start_of_the_call(client) -> None:
    a, b, now = client.query("clock")
    assert a == b == now


def test_mutation_clock_and_randomness_come_from_the_transaction(client) -> None:
    out = client.mutation("draw")
    assert out["t"] == out["now"] == pytest.approx(out["dt"])
    # the random module and ctx.random are one seeded stream: two draws from it differ
    assert out["r"] != out["same_rng"]
    other = client.mutation("draw")
    assert other["u"] != out["u"] and other["r"] != out["r"]  # a new transaction, a new seed


@pytest.mark.parametrize("fn,used", [("nap", "time.sleep"), ("async_nap", "asyncio.sleep"),
                                     ("system_random", "random.SystemRandom")])
def test_sleeping_and_os_entropy_are_refused(client, fn: str, used: str) -> None:
    with pytest.raises(DeterminismError) as info:
        client.call(fn, {})
    assert info.value.used == used
    assert used in info.value.message


def test_actions_use_the_real_clock(client) -> None:
    a, b = client.action("action_clock")
    assert b - a >= 0.015
