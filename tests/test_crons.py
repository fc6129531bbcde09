"""Crons: schedule arithmetic (pure), and runs through a real daemon with a controllable clock."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest

from runtime import App
from runtime.coordinator.services.scheduler.cronspec import next_run, stable_minute
from runtime.errors import DeployError
from runtime.testing import CLOCK, RunningDaemon, start_daemon, wait_for

APP = Path(__file__).parent / "apps" / "sched" / "app.py"
UTC = dt.UTC


def ts(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


# --- arithmetic -------------------------------------------------------------------------------


def test_next_run_of_each_schedule_kind() -> None:
    t = ts(2026, 12, 1, 10, 17, 30)  # a Tuesday
    assert next_run({"kind": "interval", "seconds": 90}, "", "x", t) == t + 90
    assert next_run({"kind": "hourly", "minute": 5}, "", "x", t) == ts(2026, 12, 1, 11, 5)
    assert next_run({"kind": "daily", "hour": 3, "minute": 30}, "", "x", t) == ts(2026, 12, 2, 3, 30)
    assert next_run({"kind": "daily", "hour": 23, "minute": 0}, "", "x", t) == ts(2026, 12, 1, 23, 0)
    assert next_run({"kind": "weekly", "day_of_week": 1, "hour": 9, "minute": 0}, "", "x", t) == ts(2026, 12, 7, 9)
    assert next_run({"kind": "monthly", "day": 31, "hour": 0, "minute": 0}, "", "x", t) == ts(2026, 12, 31)
    assert next_run({"kind": "cron", "expression": "*/5 * * * *"}, "", "x", t) == ts(2026, 12, 1, 10, 20)
    # strictly after: a run exactly on the boundary is not "next" again
    assert next_run({"kind": "hourly", "minute": 5}, "", "x", ts(2026, 12, 1, 11, 5)) == ts(2026, 12, 1, 12, 5)


def test_an_unspecified_minute_is_stable_per_cron_and_spread() -> None:
    assert stable_minute("likes", "purge") == stable_minute("likes", "purge")
    minutes = {stable_minute("m", f"cron{i}") for i in range(200)}
    assert len(minutes) > 40 and all(0 <= m < 60 for m in minutes)
    t = ts(2026, 12, 1, 10, 0, 0)
    assert dt.datetime.fromtimestamp(next_run({"kind": "hourly", "minute": None}, "m", "c", t), UTC).minute \
        == stable_minute("m", "c")


def test_cron_definitions_fail_early_naming_the_mistake() -> None:
    app = App()

    @app.mutation
    async def m(ctx) -> None: ...

    @app.query
    async def q(ctx) -> int:
        return 1

    app.crons.interval("ok", m, seconds=5)
    with pytest.raises(ValueError, match="registered twice"):
        app.crons.interval("ok", m, seconds=5)
    with pytest.raises(ValueError, match="exactly one of"):
        app.crons.interval("two", m, seconds=5, minutes=1)
    with pytest.raises(TypeError, match="is a query"):
        app.crons.hourly("q", q)
    with pytest.raises(ValueError, match="hour_utc must be an int from 0 to 23"):
        app.crons.daily("d", m, hour_utc=24)
    with pytest.raises(ValueError, match="day_of_week"):
        app.crons.weekly("w", m, day_of_week="funday", hour_utc=1)
    with pytest.raises(ValueError, match="five-field"):
        app.crons.cron("c", "* * *", m)
    assert [c["name"] for c in app.manifest()["crons"]] == ["ok"]


# --- through the daemon -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env=CLOCK)


def hits(d: RunningDaemon, key: str) -> int:
    with d.client() as c:
        return int(c.query("hits", key=key))


def test_an_interval_cron_runs_at_deploy_then_each_interval_without_bursts(daemon: RunningDaemon) -> None:
    wait_for(lambda: hits(daemon, "minutely") == 1, what="the first run at deploy")
    daemon.advance_clock(61)
    wait_for(lambda: hits(daemon, "minutely") == 2, what="the run a minute later")
    daemon.advance_clock(600)  # ten intervals at once: one run, not ten
    wait_for(lambda: hits(daemon, "minutely") == 3, what="the run after ten minutes")
    time.sleep(1.0)
    assert hits(daemon, "minutely") == 3


def test_calendar_crons_fire_at_their_utc_times(daemon: RunningDaemon) -> None:
    now = daemon.clock()
    start_daily, start_five = hits(daemon, "daily"), hits(daemon, "five")
    target = next_run({"kind": "daily", "hour": 3, "minute": 30}, "", "daily", now)
    five = next_run({"kind": "cron", "expression": "*/5 * * * *"}, "", "five", now)
    daemon.advance_clock(five - now + 1)
    wait_for(lambda: hits(daemon, "five") == start_five + 1, what="the */5 cron")
    assert hits(daemon, "daily") == start_daily or target <= five + 1
    daemon.advance_clock(max(0.0, target - daemon.clock()) + 1)
    wait_for(lambda: hits(daemon, "daily") == start_daily + 1, what="the daily 03:30 cron")


def test_a_component_cron_and_an_app_cron_targeting_a_child(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c:
        crons = {d["name"]: d for d in c.admin("data", mount="helper", table="_crons")}
        app_crons = {d["name"]: d for d in c.admin("data", mount="", table="_crons")}
        assert set(crons) == {"own"} and crons["own"]["runs"] >= 1
        assert {"every-minute", "daily", "five", "overlap", "child-tick"} <= set(app_crons)
        assert c.query("helper:ticks") >= 2  # own (negative) tick and the app's child-tick


def test_a_cron_never_overlaps_itself(daemon: RunningDaemon) -> None:
    def gauge() -> dict:
        with daemon.client() as c:
            return c.query("gauge", key="overlap")

    def cron_state() -> dict:
        with daemon.client() as c:
            return c.query("cron_state", name="overlap")

    wait_for(lambda: gauge().get("active") == 0, timeout=20, what="the deploy-time run to finish")
    runs0, skipped0 = cron_state()["runs"], cron_state()["skipped"]
    daemon.advance_clock(6 * 3600 + 1)
    wait_for(lambda: gauge().get("active") == 1, what="the second run to start")
    daemon.advance_clock(6 * 3600 + 1)  # due again while the second run still sleeps
    wait_for(lambda: cron_state()["skipped"] == skipped0 + 1, what="the overlapping run to be skipped")
    wait_for(lambda: gauge().get("active") == 0, timeout=20, what="the second run to finish")
    daemon.advance_clock(6 * 3600 + 1)
    wait_for(lambda: cron_state()["runs"] == runs0 + 2, what="the third run")
    wait_for(lambda: gauge().get("active") == 0, timeout=20, what="the third run to finish")
    assert gauge()["peak"] == 1
    assert any("skipped this run" in e["line"] for e in daemon.logs())


def test_after_downtime_a_missed_cron_runs_once_not_in_a_burst(tmp_path: Path) -> None:
    env = {"BULKHEAD_CONTROLLABLE_CLOCK": "1"}
    with start_daemon(tmp_path / "data", app=APP, env=env) as d:
        wait_for(lambda: hits(d, "minutely") == 1, what="the first run")
        d.stop()
        assert d.env is not None
        d.env["BULKHEAD_CLOCK_OFFSET_S"] = str(3 * 3600)  # three hours "later": 180 missed runs
        d.start()
        wait_for(lambda: hits(d, "minutely") == 2, what="the catch-up run")
        time.sleep(1.5)
        assert hits(d, "minutely") == 2


@pytest.mark.parametrize("body, message", [
    ("app.crons.interval('bad', FunctionRef('', 'q', 'mutation'), seconds=5)", "not a mutation or action"),
    ("app.crons.cron('bad', '61 * * * *', m)", "invalid schedule"),
    ("child = app.use('helper', name='helper')\napp.crons.interval('bad', child.own_tick, seconds=5)",
     "not a mutation or action this mount may call"),
])
def test_a_deploy_with_a_bad_cron_is_refused(tmp_path: Path, body: str, message: str) -> None:
    app = tmp_path / "capp"
    app.mkdir()
    shutil.copytree(APP.parent / "helper", app / "helper")
    (app / "app.py").write_text(
        "from runtime import App, FunctionRef\n"
        "app = App()\n"
        "@app.query\nasync def q(ctx) -> int:\n    return 1\n"
        "@app.mutation\nasync def m(ctx) -> None:\n    return None\n"
        + body + "\n"
    )
    with start_daemon(tmp_path / "data") as d:
        with pytest.raises(DeployError, match=message):
            d.deploy(app / "app.py")
        assert d.status()["deployment"]["deployed"] is False
