"""Reactive subscriptions and the query cache through a real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.errors import CallRuleError, ComponentError, IsolationError
from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "subs" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    d = module_daemon_for(APP, env={"BULKHEAD_SUBSCRIPTION_IDLE_S": "2"})
    with d.client() as c:
        for name, balance in (("a", 10), ("b", 0), ("x", 5), ("y", 5), ("cache", 1)):
            c.mutation("open_account", name=name, balance=balance)
    return d


def reruns(d: RunningDaemon) -> int:
    return int(d.status()["subscriptions"]["reruns"])


def test_a_subscription_updates_after_a_relevant_commit_and_not_after_an_unrelated_one(daemon: RunningDaemon) -> None:
    with daemon.client() as watcher, daemon.client() as writer:
        sub = watcher.subscribe("balance", name="a")
        assert sub.next(timeout=10) == 10
        before = reruns(daemon)
        writer.mutation("note", text="unrelated")
        writer.mutation("set_balance", name="b", balance=0)  # another row of the same table
        with pytest.raises(TimeoutError):
            sub.next(timeout=0.7)
        assert reruns(daemon) == before  # neither commit touched the read set: nothing re-ran
        writer.mutation("set_balance", name="a", balance=11)
        assert sub.next(timeout=10) == 11
        assert reruns(daemon) == before + 1
        writer.mutation("set_balance", name="a", balance=11)  # re-runs, same value: nothing pushed
        with pytest.raises(TimeoutError):
            sub.next(timeout=0.7)
        sub.close()


def test_two_subscriptions_of_one_client_never_show_a_mixed_state(daemon: RunningDaemon) -> None:
    seen: list[tuple[int | None, int, int]] = []
    with daemon.client() as watcher, daemon.client() as writer:
        sx, sy = watcher.subscribe("balance", name="x"), watcher.subscribe("balance", name="y")
        sx.next(timeout=10)
        stop = threading.Event()

        def transfers() -> None:
            for i in range(40):
                writer.mutation("transfer", src="x" if i % 2 else "y", dst="y" if i % 2 else "x", amount=1 + i % 3)
            stop.set()

        t = threading.Thread(target=transfers)
        t.start()
        while not stop.is_set() or watcher._sock.poll(200):
            watcher._pump(0.02)
            ts, values = watcher.snapshot()
            seen.append((ts, values[sx.id], values[sy.id]))
        t.join()
        watcher._pump(0.5)
        seen.append((watcher.snapshot()[0], sx.value, sy.value))
    moves = {(a, b) for _ts, a, b in seen}
    assert len(moves) > 3, "the transfers were not observed"
    assert all(a + b == 10 for _ts, a, b in seen), [s for s in seen if s[1] + s[2] != 10][:5]
    stamps = [ts for ts, _a, _b in seen]
    assert stamps == sorted(stamps)


def test_a_clients_mutation_returns_after_its_subscriptions_reflect_it(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        sub = c.subscribe("balance", name="b")
        sub.next(timeout=10)
        for value in (3, 4, 5):
            c.mutation("set_balance", name="b", balance=value)
            ts, values = c.snapshot()  # no pumping: the transition arrived before the mutation's reply
            assert values[sub.id] == value and ts is not None and ts >= (c.last_commit_ts or 0)


def test_errors_are_delivered_then_the_subscription_goes_on(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        sub = c.subscribe("balance", name="late")
        with pytest.raises(ComponentError) as err:
            sub.next(timeout=10)
        assert err.value.data == {"missing": "late"}
        c.mutation("open_account", name="late", balance=42)
        assert sub.next(timeout=10) == 42


def test_only_visible_queries_can_be_subscribed(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        with pytest.raises(CallRuleError, match="only queries"):
            c.subscribe("transfer", src="a", dst="b", amount=1)
        with pytest.raises(Exception, match="no function"):
            c.subscribe("nope")
    with daemon.client() as c, pytest.raises(IsolationError, match="internal"):
        c.subscribe("secret")
    with daemon.client(admin=True) as c:
        assert c.subscribe("secret").next(timeout=10) == 7


def test_callbacks_and_the_async_client(daemon: RunningDaemon) -> None:
    got: list[int] = []
    with daemon.client() as c, daemon.client() as writer:
        sub = c.subscribe("balance", name="a").on_change(got.append)
        wait_for(lambda: got, what="the first value")
        writer.mutation("set_balance", name="a", balance=99)
        wait_for(lambda: got[-1] == 99, what="the change")
        sub.close()

    async def main() -> list[int]:
        out = []
        async with daemon.async_client() as ac, daemon.async_client() as aw:
            it = await ac.subscribe("balance", name="a")
            out.append(await asyncio.wait_for(it.__anext__(), 10))
            await aw.mutation("set_balance", name="a", balance=100)
            out.append(await asyncio.wait_for(it.__anext__(), 10))
            await it.aclose()
        return out

    assert asyncio.run(main()) == [99, 100]


def test_closed_and_vanished_clients_are_cleaned_up(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        sub = c.subscribe("balance", name="a")
        sub.next(timeout=10)
        start = daemon.status()["subscriptions"]["subscriptions"]
        sub.close()
        assert daemon.status()["subscriptions"]["subscriptions"] == start - 1
    gone = daemon.client()
    gone.subscribe("balance", name="a")
    gone._sock.close(linger=0)  # vanishes without a word
    time.sleep(2.5)  # past subscription_idle_s=2
    with daemon.client() as w:
        w.mutation("note", text="poke")
    wait_for(lambda: daemon.status()["subscriptions"]["clients"] == 0, what="the vanished client to be dropped")
    assert daemon.status()["subscriptions"]["expired_clients"] >= 1


def test_a_subscriber_that_is_not_iterating_is_kept_alive_by_its_pings(daemon: RunningDaemon) -> None:
    from runtime.client import Client

    with Client(daemon.url, None, 30.0, daemon.info.get("max_frame_bytes"), keepalive_s=0.5) as c, \
            daemon.client() as writer:
        sub = c.subscribe("balance", name="b")
        first = sub.next(timeout=10)
        time.sleep(3.0)  # past subscription_idle_s=2, without reading anything
        writer.mutation("set_balance", name="b", balance=first + 7)
        assert sub.next(timeout=10) == first + 7


def test_queries_are_served_from_the_cache_until_their_read_set_changes(daemon: RunningDaemon) -> None:
    def ran() -> int:
        return sum(1 for e in daemon.logs() if e["line"] == "balance cache ran")

    with daemon.client() as c:
        assert c.query("balance", name="cache") == 1
        runs, hits = ran(), daemon.status()["query_cache"]["hits"]
        for _ in range(5):
            assert c.query("balance", name="cache") == 1
        c.mutation("note", text="unrelated")
        assert c.query("balance", name="cache") == 1
        assert ran() == runs and daemon.status()["query_cache"]["hits"] == hits + 6
        c.mutation("set_balance", name="cache", balance=2)
        assert c.query("balance", name="cache") == 2  # the write invalidated the entry
        assert ran() == runs + 1


def test_run_watch_prints_each_change(daemon: RunningDaemon) -> None:
    env = dict(os.environ)
    with subprocess.Popen([sys.executable, "-m", "runtime", "run", "balance", '{"name": "y"}', "--watch",
                           "--data", str(daemon.data_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=env, text=True) as proc:
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            with daemon.client() as c:
                c.mutation("set_balance", name="y", balance=first + 1000)
            assert json.loads(proc.stdout.readline()) == first + 1000
        finally:
            proc.terminate()
            proc.wait(10)
