"""The action_cache component through a real daemon (tests/apps/actioncache, mounted twice).

The daemon runs on the controllable clock: ttls, stale windows, claim timeouts and the 03:00 purge
are reached with ``advance_clock``, never by sleeping.  Single-flight and refresh tests hold the
cached action in flight with a *gate* (a document the action polls) and release it when the test has
seen, in the database, every caller in the state it checks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.action_cache import ActionCache, keys
from runtime import FunctionRef, MountRef
from runtime.client import Client
from runtime.errors import BulkheadError, ComponentError, ValidationError, WorkerCrashed
from runtime.testing import CLOCK, RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "actioncache" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=CLOCK)


def fetch(c: Client, which: str, **kw: Any) -> Any:
    ttl = kw.pop("ttl", None)
    force = kw.pop("force", False)
    return c.action("fetch", which=which, args=kw, ttl=ttl, force=force)


def runs(c: Client, tag: str) -> int:
    return int(c.query("runs", tag=tag))


def test_a_miss_runs_the_action_and_a_hit_does_not(client: Client) -> None:
    first = fetch(client, "plain", tag="hm")
    assert first == {"tag": "hm", "x": None, "run": 1}
    assert fetch(client, "plain", tag="hm") == first
    assert runs(client, "hm") == 1
    assert client.query("count", which="plain") >= 1


def test_hits_commit_nothing_and_are_read_from_the_component_workers_cache(client: Client,
                                                                          daemon: RunningDaemon) -> None:
    assert fetch(client, "noexp", tag="hot")["run"] == 1
    fetch(client, "noexp", tag="hot")  # the first hit fills the worker's read cache
    before = daemon.status()["stats"]
    for _ in range(10):
        assert fetch(client, "noexp", tag="hot")["run"] == 1
    after = daemon.status()["stats"]
    assert after["commit_rounds"] == before["commit_rounds"]  # a hit is a query: nothing to commit
    assert after["cached_reads"] - before["cached_reads"] >= 20  # the entry and its value, 10 times


def test_an_entry_expires_after_its_ttl(client: Client, daemon: RunningDaemon) -> None:
    assert fetch(client, "plain", tag="ttl")["run"] == 1
    daemon.advance_clock(59)
    assert fetch(client, "plain", tag="ttl")["run"] == 1
    daemon.advance_clock(2)
    assert fetch(client, "plain", tag="ttl")["run"] == 2  # expired: run again, stored again
    assert fetch(client, "plain", tag="ttl")["run"] == 2


def test_a_shorter_ttl_per_call_applies_to_older_entries(client: Client, daemon: RunningDaemon) -> None:
    assert fetch(client, "noexp", tag="ttl-override")["run"] == 1
    daemon.advance_clock(11)
    assert fetch(client, "noexp", tag="ttl-override")["run"] == 1  # no ttl: kept
    assert fetch(client, "noexp", tag="ttl-override", ttl=10)["run"] == 2
    with pytest.raises(ValidationError, match=r"ttl must be > 0 seconds"):
        fetch(client, "noexp", tag="ttl-override", ttl=-1)


def test_force_refreshes_without_clearing_first(client: Client) -> None:
    assert fetch(client, "plain", tag="force")["run"] == 1
    assert fetch(client, "plain", tag="force", force=True)["run"] == 2
    assert fetch(client, "plain", tag="force")["run"] == 2
    assert runs(client, "force") == 2


def test_keys_are_the_exact_arguments(client: Client) -> None:
    for x in (1, 1.0, True, "1", [1], {"v": 1}, None, b"1", -0.0, 0.0):
        assert fetch(client, "noexp", tag="exact", x=x)["x"] == x
    assert runs(client, "exact") == 10  # each a key of its own: 1, 1.0 and True differ, so do 0.0 and -0.0
    assert fetch(client, "noexp", tag="exact-order", x={"a": 1, "b": [2, 3]})["run"] == 1
    assert fetch(client, "noexp", tag="exact-order", x={"b": [2, 3], "a": 1})["run"] == 1  # key order is not part
    assert fetch(client, "noexp", tag="exact-order", x={"b": [3, 2], "a": 1})["run"] == 2


def test_a_failing_action_caches_nothing_and_releases_its_claim(client: Client) -> None:
    for expected_run in (1, 2):  # the second call runs at once: the first one's claim was released
        with pytest.raises(ComponentError) as info:
            fetch(client, "sf", tag="fails", fail=True)
        assert info.value.data == {"kind": "ComputeFailed", "run": expected_run}
    assert client.query("peek", which="sf", args={"tag": "fails", "fail": True})["kind"] == "miss"


def test_a_result_too_big_to_cache_is_returned_uncached_and_frees_the_key(client: Client) -> None:
    big = 2 * 1024 * 1024  # over the 1 MiB document limit
    waits = client.query("events", name="sf", kind="wait")
    first = fetch(client, "sf", tag="big", pad=big)
    assert first["run"] == 1 and len(first["pad"]) == big
    assert fetch(client, "sf", tag="big", pad=big)["run"] == 2  # not cached; its claim was released: no wait
    assert client.query("peek", which="sf", args={"tag": "big", "pad": big})["kind"] == "miss"
    assert client.query("events", name="sf", kind="wait") == waits


def test_get_reads_without_running_and_set_stores_without_running(client: Client, daemon: RunningDaemon) -> None:
    args = {"tag": "direct"}
    assert client.query("lookup", which="plain", args=args) == {"hit": False}
    assert client.mutation("prime", which="plain", args=args, value={"primed": True}) == "created"
    assert client.query("lookup", which="plain", args=args) == {"hit": True, "value": {"primed": True}, "stale": False}
    assert fetch(client, "plain", **args) == {"primed": True}
    assert runs(client, "direct") == 0
    assert client.mutation("prime", which="plain", args=args, value=2) == "replaced"
    assert fetch(client, "plain", **args) == 2
    daemon.advance_clock(61)
    assert client.query("lookup", which="plain", args=args, nonce=1) == {"hit": False}


# --- single flight ----------------------------------------------------------------------------------------------


class Calls:
    """Client calls of ``fetch`` running in threads, each with a client of its own."""

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon
        self.threads: list[threading.Thread] = []
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def start(self, which: str, **args: Any) -> None:
        def run() -> None:
            try:
                with self.daemon.client() as c:
                    self.results.append(fetch(c, which, **args))
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self) -> list[Any]:
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a fetch did not return"
        assert self.errors == []
        return self.results


def herd(daemon: RunningDaemon, c: Client, which: str, tag: str, callers: int = 5) -> tuple[int, list[Any]]:
    """One caller misses and holds its run at a gate; ``callers - 1`` more then miss the same key.

    Returns how many runs had started once every later caller was either running the action or
    waiting for the first one's claim (the cache's ``wait`` event), and what every caller got.
    """
    gate = f"gate-{tag}"
    c.mutation("set_gate", name=gate, open=False)
    calls = Calls(daemon)
    calls.start(which, tag=tag, gate=gate)
    wait_for(lambda: runs(c, tag) == 1, what="the first run to start")
    for _ in range(callers - 1):
        calls.start(which, tag=tag, gate=gate)
    wait_for(lambda: runs(c, tag) + c.query("events", name=which, kind="wait") >= callers,
             what="every caller to run or wait")
    started = runs(c, tag)
    c.mutation("set_gate", name=gate, open=True)
    return started, calls.join()


def test_single_flight_concurrent_misses_run_the_action_once(client: Client, daemon: RunningDaemon) -> None:
    started, results = herd(daemon, client, "sf", "herd")
    assert started == 1
    assert results == [{"tag": "herd", "x": None, "run": 1}] * 5
    assert runs(client, "herd") == 1
    assert client.query("events", name="sf", kind="wait") >= 4


def test_without_single_flight_the_same_herd_runs_the_action_for_every_caller(client: Client,
                                                                              daemon: RunningDaemon) -> None:
    """The control for the test above: the same scenario detects duplicate runs."""
    started, results = herd(daemon, client, "nosf", "herd-nosf")
    assert started == 5
    # every caller returns the value the first put stored: later fills keep the fresh entry
    assert len({r["run"] for r in results}) == 1


def test_a_fill_in_flight_holds_only_its_own_key(client: Client, daemon: RunningDaemon) -> None:
    gate = "gate-own-key"
    client.mutation("set_gate", name=gate, open=False)
    calls = Calls(daemon)
    calls.start("sf", tag="held", gate=gate)
    wait_for(lambda: runs(client, "held") == 1, what="the held fill to start")
    assert fetch(client, "sf", tag="free")["run"] == 1  # another key: no wait for the held one
    assert fetch(client, "sf", tag="free")["run"] == 1
    client.mutation("set_gate", name=gate, open=True)
    assert calls.join() == [{"tag": "held", "x": None, "run": 1}]


@pytest.mark.slow
def test_single_flight_with_a_big_herd(client: Client, daemon: RunningDaemon) -> None:
    started, results = herd(daemon, client, "sf", "big-herd", callers=24)
    assert started == 1 and {r["run"] for r in results} == {1} and len(results) == 24


def test_a_crashed_filler_does_not_wedge_the_key(client: Client, daemon: RunningDaemon) -> None:
    args = {"tag": "crash"}
    assert client.action("claim_only", which="crashy", args=args)["claimed"] is True
    calls = Calls(daemon)
    calls.start("crashy", **args)
    wait_for(lambda: client.query("events", name="crashy", kind="wait") == 1, what="the caller to wait")
    assert runs(client, "crash") == 0  # it waits for the claim, which nobody fills
    daemon.advance_clock(6)  # the claim (fill_timeout=5) expires: the waiter claims and runs
    assert calls.join() == [{"tag": "crash", "x": None, "run": 1}]
    assert fetch(client, "crashy", **args)["run"] == 1


def test_a_filler_whose_worker_is_killed_mid_fill_does_not_wedge_the_key(client: Client,
                                                                        daemon: RunningDaemon) -> None:
    gate = "gate-kill"
    args = {"tag": "kill", "gate": gate}
    client.mutation("set_gate", name=gate, open=False)
    calls = Calls(daemon)
    calls.start("crashy", **args)
    wait_for(lambda: runs(client, "kill") == 1, what="the fill to start")
    os.kill(daemon.worker_pid(""), signal.SIGKILL)  # the app's worker, running the filler's action
    for t in calls.threads:
        t.join(60)
    assert len(calls.errors) == 1 and isinstance(calls.errors[0], WorkerCrashed)
    client.mutation("set_gate", name=gate, open=True)
    waits = client.query("events", name="crashy", kind="wait")
    calls = Calls(daemon)
    calls.start("crashy", **args)  # the dead filler's claim still holds the key: this caller waits...
    wait_for(lambda: client.query("events", name="crashy", kind="wait") == waits + 1, what="the caller to wait")
    daemon.advance_clock(6)  # ...until the claim (fill_timeout=5) expires
    assert calls.join() == [{"tag": "kill", "x": None, "run": 2}]


def test_entries_and_claims_survive_a_daemon_kill(daemon_for) -> None:  # type: ignore[no-untyped-def]
    d = daemon_for(APP, env=CLOCK)
    with d.client() as c:
        assert fetch(c, "crashy", tag="durable")["run"] == 1
        assert c.action("claim_only", which="crashy", args={"tag": "durable-claim"})["claimed"] is True
    d.kill()
    d.start()
    with d.client() as c:
        assert fetch(c, "crashy", tag="durable")["run"] == 1  # still cached
        # the claim made before the kill still holds its key
        assert c.action("claim_only", which="crashy", args={"tag": "durable-claim"}) == {"claimed": False,
                                                                                         "hit": False}


# --- stale-while-revalidate ---------------------------------------------------------------------------------------


def test_stale_while_revalidate_serves_the_old_value_and_refreshes_once(client: Client,
                                                                       daemon: RunningDaemon) -> None:
    gate = "gate-swr"
    args = {"tag": "swr", "gate": gate}
    assert fetch(client, "swr", **args)["run"] == 1  # the gate does not exist yet: open
    client.mutation("set_gate", name=gate, open=False)
    daemon.advance_clock(61)  # expired (ttl 60), within the stale window (600)
    assert fetch(client, "swr", **args)["run"] == 1  # the stale value, at once
    wait_for(lambda: runs(client, "swr") == 2, what="the background refresh to start")
    for _ in range(3):  # while it runs: still the stale value, and no second refresh
        assert fetch(client, "swr", **args)["run"] == 1
    assert client.query("events", name="swr", kind="stale") == 4
    client.mutation("set_gate", name=gate, open=True)
    wait_for(lambda: fetch(client, "swr", **args)["run"] == 2, what="the refreshed value")
    assert runs(client, "swr") == 2
    daemon.advance_clock(60 + 600 + 1)  # past the stale window too: a plain miss, run in the call
    assert fetch(client, "swr", **args)["run"] == 3


def test_a_failing_refresh_keeps_the_stale_value_and_frees_the_key(client: Client, daemon: RunningDaemon) -> None:
    args = {"tag": "swr-fail", "fail_after": 1}  # run 1 succeeds, every later run raises
    assert fetch(client, "swr", **args)["run"] == 1
    daemon.advance_clock(61)
    assert fetch(client, "swr", **args)["run"] == 1
    wait_for(lambda: runs(client, "swr-fail") == 2, what="the refresh to run")
    # the refresh failed: its claim is released, so the next stale hit starts another one
    wait_for(lambda: fetch(client, "swr", **args)["run"] == 1 and runs(client, "swr-fail") >= 3,
             what="a second refresh after the failed one")


# --- size cap -----------------------------------------------------------------------------------------------------


def test_max_entries_evicts_the_least_recently_used(client: Client, daemon: RunningDaemon) -> None:
    for k in ("k1", "k2", "k3"):
        assert fetch(client, "lru", tag=f"lru-{k}")["run"] == 1
        daemon.advance_clock(1)
    daemon.advance_clock(10)  # older than touch_after: the next hit records its use
    assert fetch(client, "lru", tag="lru-k1")["run"] == 1  # k1 is now the most recently used
    assert fetch(client, "lru", tag="lru-k4")["run"] == 1  # a fourth entry: one has to go
    wait_for(lambda: client.query("count", which="lru") == 3, what="the eviction")
    kinds = {k: client.query("peek", which="lru", args={"tag": f"lru-{k}"})["kind"] for k in ("k1", "k2", "k3", "k4")}
    assert kinds == {"k1": "hit", "k2": "miss", "k3": "hit", "k4": "hit"}


def test_eviction_far_past_the_cap_goes_in_batches(client: Client) -> None:
    client.mutation("fill_many", name="capped", count=150)  # stored without a cap
    assert client.action("fetch_capped", name="capped", args={"tag": "cap"}, max_entries=5)["run"] == 1
    # 151 entries, a cap of 5: one eviction deletes 100 and schedules the next, which deletes the rest
    wait_for(lambda: client.query("count_of", name="capped") == 5, what="the eviction batches")
    assert client.query("peek_name", name="capped", args={"tag": "cap"})["kind"] == "hit"  # the newest stays


def test_a_hit_records_its_use_only_after_touch_after(client: Client, daemon: RunningDaemon) -> None:
    args = {"tag": "touch"}

    def due(nonce: int) -> bool:
        return bool(client.query("peek", which="lru", args=args, nonce=nonce)["touch"])

    assert fetch(client, "lru", **args)["run"] == 1
    daemon.advance_clock(5)
    assert fetch(client, "lru", **args)["run"] == 1 and not due(1)  # a hit within touch_after (10 s): no write
    daemon.advance_clock(6)
    assert due(2)
    assert fetch(client, "lru", **args)["run"] == 1  # this hit records its use...
    assert not due(3)  # ...so the next one need not


# --- invalidation and the purge -----------------------------------------------------------------------------------


def test_remove_deletes_one_entry(client: Client) -> None:
    assert fetch(client, "bulk", tag="rm")["run"] == 1
    assert fetch(client, "bulk", tag="rm-other")["run"] == 1
    assert client.mutation("remove", which="bulk", args={"tag": "rm"}) is True
    assert client.mutation("remove", which="bulk", args={"tag": "rm"}) is False
    assert fetch(client, "bulk", tag="rm")["run"] == 2
    assert fetch(client, "bulk", tag="rm-other")["run"] == 1


@pytest.mark.parametrize("how", ["remove", "remove_all_for_name"])
def test_a_removal_cancels_the_fill_in_flight_so_its_older_result_is_not_stored(client: Client,
                                                                                daemon: RunningDaemon,
                                                                                how: str) -> None:
    gate, tag = f"gate-cancel-{how}", f"cancel-{how}"
    args = {"tag": tag, "gate": gate}
    client.mutation("set_gate", name=gate, open=False)
    calls = Calls(daemon)
    calls.start("crashy", **args)
    wait_for(lambda: runs(client, tag) == 1, what="the fill to start")
    if how == "remove":
        assert client.mutation("remove", which="crashy", args=args) is False  # no entry yet, but a fill
    else:
        client.mutation("remove_all_for_name", which="crashy")
    client.mutation("set_gate", name=gate, open=True)
    assert calls.join() == [{"tag": tag, "x": None, "run": 1}]  # its caller still gets its result...
    assert client.query("peek", which="crashy", args=args)["kind"] == "miss"  # ...but it was not stored
    assert fetch(client, "crashy", **args)["run"] == 2  # and nobody waits for the cancelled claim


def test_remove_all_for_name_deletes_in_batches_and_only_that_name(client: Client) -> None:
    for i in range(5):
        fetch(client, "bulk", tag=f"rfn-{i}")
    assert fetch(client, "noexp", tag="rfn-keep")["run"] == 1
    kept = client.query("count", which="noexp")
    assert client.mutation("remove_all_for_name", which="bulk", batch_size=2) == {"deleted": 2, "more": True}
    wait_for(lambda: client.query("count", which="bulk") == 0, what="the later batches")
    assert client.query("count", which="noexp") == kept
    assert fetch(client, "noexp", tag="rfn-keep")["run"] == 1
    assert fetch(client, "bulk", tag="rfn-0")["run"] == 2


def test_remove_all_before_a_time_keeps_newer_entries(client: Client, daemon: RunningDaemon) -> None:
    assert fetch(client, "plain", tag="ra-old")["run"] == 1
    cut = daemon.advance_clock(1)
    daemon.advance_clock(1)
    assert fetch(client, "noexp", tag="ra-new")["run"] == 1
    assert client.mutation("remove_all", which="plain", before=cut)["deleted"] >= 1  # every name: both caches
    assert fetch(client, "plain", tag="ra-old")["run"] == 2
    assert fetch(client, "noexp", tag="ra-new")["run"] == 1


def test_the_component_mounted_twice_keeps_separate_data(client: Client) -> None:
    assert fetch(client, "plain", tag="twice")["run"] == 1
    assert fetch(client, "b_plain", tag="twice")["run"] == 2  # the same name and args in mount b: a miss
    assert fetch(client, "plain", tag="twice")["run"] == 1
    client.mutation("remove_all", which="plain")  # mount a only
    wait_for(lambda: client.query("count", which="plain") == 0, what="mount a to be emptied")
    assert client.query("count", which="b_plain") >= 1
    assert fetch(client, "b_plain", tag="twice")["run"] == 2


def _next_3am(now: float) -> float:
    t = datetime.fromtimestamp(now, UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    if t.timestamp() <= now:
        t += timedelta(days=1)
    return t.timestamp()


def test_the_daily_cron_purges_expired_entries_and_claims(client: Client, daemon: RunningDaemon) -> None:
    assert fetch(client, "purgeable", tag="purge")["run"] == 1
    assert fetch(client, "noexp", tag="purge-keep")["run"] == 1
    assert client.action("claim_only", which="crashy", args={"tag": "purge-claim"})["claimed"]
    daemon.advance_clock(61)
    assert client.query("count", which="purgeable") == 1  # expired, not yet purged
    now = daemon.clock()
    daemon.advance_clock(_next_3am(now) - now + 60)
    wait_for(lambda: client.query("count", which="purgeable") == 0, what="the 03:00 purge")
    with daemon.client(admin=True) as admin:
        fills = admin.admin("data", mount="cache_a", table="fills", limit=1000)
    assert [f for f in fills if f["expires_at"] < daemon.clock()] == []
    assert fetch(client, "noexp", tag="purge-keep")["run"] == 1  # no ttl: never purged


# --- options ------------------------------------------------------------------------------------------------------


def test_log_prints_one_stats_line_per_fetch(client: Client, daemon: RunningDaemon) -> None:
    assert fetch(client, "noexp", tag="logged")["run"] == 1
    assert fetch(client, "noexp", tag="logged")["run"] == 1
    stats = [json.loads(e["line"]) for e in daemon.logs() if e["line"].startswith('{"get"')]
    assert {"get": "miss", "name": "noexp", "put": "created", "type": "action-cache-stats"} in stats
    assert {"get": "hit", "name": "noexp", "type": "action-cache-stats"} in stats


def test_bad_options_are_refused_naming_the_option() -> None:
    mount, action = MountRef("cache"), FunctionRef("", "embed", "action")
    assert ActionCache(mount, action).name == "embed"
    assert ActionCache(MountRef("cache"), FunctionRef("child", "embed")).name == "child:embed"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"ttl": 0}, "ttl must be > 0 seconds"),
        ({"ttl": "1h"}, "ttl must be a number of seconds"),
        ({"max_entries": 1001}, "max_entries must be an int from 1 to 1000"),
        ({"max_entries": 0}, "max_entries must be an int from 1 to 1000"),
        ({"fill_timeout": 0}, "fill_timeout must be > 0 seconds"),
        ({"touch_after": -1}, "touch_after must be >= 0 seconds"),
        ({"stale_while_revalidate": 60}, "stale_while_revalidate needs a ttl"),
        ({"stale_while_revalidate": -1, "ttl": 5}, "stale_while_revalidate must be >= 0 seconds"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"on_event": 3}, "on_event must be an async function"),
    ]
    for options, message in bad:
        with pytest.raises(ValidationError, match=message):
            ActionCache(mount, action, **options)
    with pytest.raises(ValidationError, match="action must be an action, not the query 'count'"):
        ActionCache(mount, FunctionRef("", "count", "query"))
    with pytest.raises(ValidationError, match="name= is required when action is a function handle"):
        ActionCache(mount, "handle-string")
    with pytest.raises(ValidationError, match="needs a handle: pass an action of this mount"):
        ActionCache(mount, FunctionRef("child", "embed"), ttl=5, stale_while_revalidate=5)
    with pytest.raises(ValidationError, match="mount must be what app.use"):
        ActionCache("cache", action)  # type: ignore[arg-type]


BAD_APP = """
from components.action_cache import ActionCache
from runtime import ActionCtx, App

app = App()


@app.action
async def f(ctx: ActionCtx) -> int:
    return 1


cache = ActionCache(app.use("components.action_cache", name="cache_a"), f, max_entries=5000)
"""


def test_an_app_with_a_bad_cache_option_is_refused_at_deploy(client: Client, daemon: RunningDaemon,
                                                              tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(BAD_APP)
    with pytest.raises(BulkheadError, match="max_entries must be an int from 1 to 1000"):
        daemon.deploy(tmp_path / "app.py")
    assert fetch(client, "noexp", tag="after-bad-deploy")["run"] == 1  # the deployed app still serves


def test_the_component_refuses_bad_arguments_by_name(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as admin:
        def call(fn: str, **args: Any) -> Any:
            return admin.call(f"cache_a:{fn}", args)

        base = {"name": "direct", "args": {"k": 1}}
        with pytest.raises(ValidationError, match="max_entries must be an int from 1 to 1000"):
            call("put", **base, value=1, max_entries=5000)
        with pytest.raises(ValidationError, match="ttl must be > 0 seconds"):
            call("get", **base, ttl=-5)
        with pytest.raises(ValidationError, match="fill_timeout must be > 0 seconds"):
            call("claim", **base, fill_timeout=0)
        with pytest.raises(ValidationError, match="batch_size must be an int from 1 to 1000"):
            call("remove_all", batch_size=0)
        with pytest.raises(ValidationError, match="name must be a non-empty string"):
            call("get", name="", args={})
        assert call("put", **base, value=1)["put"] == "created"
        entry = admin.admin("data", mount="cache_a", table="entries", limit=10_000)
        entry_id = next(e["_id"] for e in entry if e["name"] == "direct")
        with pytest.raises(ValidationError, match="is not the Id of a claim .*'entries'"):
            call("release", fill_id=entry_id)


# --- conflicts --------------------------------------------------------------------------------------------------


def test_concurrent_fills_of_different_keys_never_conflict(daemon: RunningDaemon) -> None:
    before = daemon.status()["stats"]["conflict_retries"]
    calls = Calls(daemon)
    for i in range(8):
        for j in range(3):
            calls.start("bulk", tag=f"nc-{i}-{j}")
    results = calls.join()
    assert sorted(r["tag"] for r in results) == sorted(f"nc-{i}-{j}" for i in range(8) for j in range(3))
    assert daemon.status()["stats"]["conflict_retries"] == before


# --- keys (pure) ------------------------------------------------------------------------------------------------

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


def _same(a: Any, b: Any) -> bool:
    """Equal with their types: what a cache key must tell apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _reordered(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _reordered(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [_reordered(x) for x in v]
    return v


@settings(max_examples=300, deadline=None)
@given(_VALUES, _VALUES)
def test_two_argument_sets_share_a_key_exactly_when_they_are_the_same_values(a: Any, b: Any) -> None:
    assert (keys.cache_key("f", {"x": a}) == keys.cache_key("f", {"x": b})) == _same(a, b)
    assert keys.cache_key("f", {"x": a}) == keys.cache_key("f", {"x": _reordered(a)})


def test_keys_separate_names_and_refuse_what_is_not_a_value() -> None:
    assert keys.cache_key("f", {}) != keys.cache_key("g", {})
    assert keys.cache_key("f", {"a": ("t",)}) == keys.cache_key("f", {"a": ["t"]})
    assert len(keys.cache_key("f", {"a": 1})) == 64
    with pytest.raises(keys.UnkeyableArgs, match=r"a\.b\[1\]: set is not a value"):
        keys.cache_key("f", {"a": {"b": [1, {2}]}})
    with pytest.raises(keys.UnkeyableArgs, match="dict keys must be strings"):
        keys.cache_key("f", {"a": {1: 2}})


# --- types --------------------------------------------------------------------------------------------------------

TYPED = '''
from typing import assert_type

from components.action_cache import ActionCache
from runtime import ActionCtx, App

app = App()


@app.action
async def embed(ctx: ActionCtx, text: str) -> list[float]:
    return [1.0]


cache = ActionCache(app.use("components.action_cache"), embed, ttl=60)
assert_type(cache, ActionCache[list[float]])


async def use(ctx: ActionCtx) -> None:
    assert_type(await cache.fetch(ctx, {"text": "hi"}), list[float])
    n: int = await cache.fetch(ctx, {"text": "hi"})  # the error mypy must report
'''


def test_fetch_returns_what_the_action_returns_for_mypy(tmp_path: Path) -> None:
    from mypy import api

    snippet = tmp_path / "typed_cache.py"
    snippet.write_text(TYPED)
    root = Path(__file__).resolve().parents[1]
    out, _err, status = api.run(["--strict", "--no-incremental", "--config-file", str(root / "pyproject.toml"),
                                 str(snippet)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "typed_cache.py:21:" in errors[0] and "[assignment]" in errors[0], out
    assert status == 1
