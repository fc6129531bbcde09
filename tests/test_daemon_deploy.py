"""Deploys through a real daemon: atomic switch to new code, unmounting keeps data read-only,
re-mounting makes it writable again; actions; the asyncio client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.errors import NotFoundError
from runtime.testing import start_daemon

APPS = Path(__file__).parent / "apps" / "dep"


def test_redeploy_switches_code_and_unmount_keeps_data_read_only(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APPS / "v1") as d:
        with d.client() as c:
            c.mutation("put", name="kept")
            assert c.query("version") == 1
            old_pids = {m["path"]: m["pid"] for m in d.status()["deployment"]["mounts"]}
            out = d.deploy(APPS / "v2")
            assert [m["path"] for m in out["mounts"]] == [""]
            assert out["unmounted"] == ["box"]
            assert c.query("version") == 2
            with pytest.raises(NotFoundError):
                c.query("names")  # the function went away with the new code
            assert d.worker_pid("") != old_pids[""]
        with d.client(admin=True) as admin:
            tables = {(t["mount"], t["table"]): t for t in admin.admin("data")}
            assert tables[("box", "things")]["documents"] == 1  # data kept
            assert tables[("box", "things")]["read_only"] is True
            assert [doc["name"] for doc in admin.admin("data", mount="box", table="things")] == ["kept"]
        d.deploy(APPS / "v1")  # mount it again: same data, writable
        with d.client() as c:
            c.mutation("put", name="again")
            assert sorted(c.query("names")) == ["again", "kept"]


def test_actions_run_each_call_as_its_own_transaction(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APPS / "v1") as d, d.client() as c:
        out = c.action("put_many", names=["a", "b", "c"])
        assert len(out) == 4 and out[-1] == "3"
        assert sorted(c.query("names")) == ["a", "b", "c"]


def test_async_client_runs_many_calls_at_once(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APPS / "v1") as d:

        async def main() -> list[str]:
            async with d.async_client() as ac:
                await asyncio.gather(*(ac.mutation("put", name=f"n{i}") for i in range(20)))
                return await ac.query("names")

        assert sorted(asyncio.run(main())) == sorted(f"n{i}" for i in range(20))


def test_use_by_registered_name_through_the_entry_point_group(tmp_path: Path) -> None:
    """A package registered under `bulkhead.components` is mounted by its registered name."""
    site = tmp_path / "site"
    dist = site / "bhtest_registered-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bhtest-registered\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bulkhead.components]\nshelf = shelfpkg\n")
    app_dir = tmp_path / "app"
    (app_dir / "shelfpkg").mkdir(parents=True)
    (app_dir / "shelfpkg" / "__init__.py").write_text("")
    (app_dir / "shelfpkg" / "component.py").write_text(
        "from runtime import Component\n"
        "component = Component('shelf')\n"
        "@component.query\n"
        "async def hello(ctx) -> str:\n"
        "    return 'from shelf'\n"
    )
    (app_dir / "app.py").write_text(
        "from runtime import App\n"
        "app = App()\n"
        "s = app.use('shelf')\n"
        "@app.query\n"
        "async def hi(ctx) -> str:\n"
        "    return await ctx.run_query(s.hello)\n"
    )
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    with start_daemon(tmp_path / "data", app=app_dir, env=env) as d, d.client() as c:
        assert c.query("hi") == "from shelf"
        mounts = {m["path"]: m["component"] for m in d.status()["deployment"]["mounts"]}
        assert mounts["shelf"] == "shelf"
