"""A component package installed outside the app and outside ``components/`` (site-packages, registered in
the ``bulkhead.components`` entry-point group) deploys and runs, by its registered name and by import path;
the app imports its client wrapper; its implementation stays out of the app's worker.

The package is written into a temp ``site-packages`` directory with its own ``.dist-info`` (what pip
writes), put on the daemon's ``PYTHONPATH``: a real install, without touching the test's environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon

PACKAGE = {
    "__init__.py": '"""Greeter: a tiny installed component."""\n\nfrom greeter.client import Greeter\n\n'
                   '__all__ = ["Greeter"]\n',
    "client.py": "from runtime import MountRef\n\n\nclass Greeter:\n    def __init__(self, mount: MountRef) -> None:\n"
                 "        self.mount = mount\n\n    async def greet(self, ctx, name: str) -> str:\n"
                 "        return await ctx.run_mutation(self.mount.greet, name=name)\n",
    "component.py": "from pydantic import BaseModel\n\nfrom runtime import Component\n\nfrom greeter import words\n\n"
                    'component = Component("greeter")\n\n\n@component.table("greetings")\nclass Greeting(BaseModel):\n'
                    "    name: str\n\n\n@component.mutation\nasync def greet(ctx, name: str) -> str:\n"
                    '    await ctx.db.insert("greetings", {"name": name})\n'
                    '    n = len(await ctx.db.query("greetings").collect())\n'
                    "    return f\"{words.HELLO}, {name} (#{n})\"\n",
    "words.py": 'HELLO = "hello"  # GREETERIMPL-7c1e\n',
}
APP = ('from greeter import Greeter\n\nfrom runtime import App, MutationCtx\n\napp = App()\n'
       'by_name = Greeter(app.use("greeter", name="byname"))\n'
       'by_path = Greeter(app.use("greeter.component", name="bypath"))\n\n\n'
       "@app.mutation\nasync def greet(ctx: MutationCtx, name: str) -> list[str]:\n"
       "    return [await by_name.greet(ctx, name), await by_path.greet(ctx, name)]\n\n\n"
       "@app.query\nasync def impl_loaded(ctx) -> bool:\n"
       "    for cls in ().__class__.__base__.__subclasses__():\n"
       '        if cls.__name__ == "_wrap_close":\n'
       '            real = cls.__init__.__globals__["__builtins__"]["__import__"]\n'
       '            return "greeter.component" in real("sys").modules\n'
       "    raise RuntimeError('escape failed')\n")


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    site = tmp_path / "lib" / "site-packages"
    for name, text in PACKAGE.items():
        (site / "greeter" / name).parent.mkdir(parents=True, exist_ok=True)
        (site / "greeter" / name).write_text(text)
    info = site / "greeter-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bulkhead.components]\ngreeter = greeter\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP)
    return site


def test_an_installed_component_deploys_and_runs(daemon_for, installed: Path, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(installed), os.environ.get("PYTHONPATH", "")) if p)
    d: RunningDaemon = daemon_for(env={"PYTHONPATH": path}, scope_dir=tmp_path / "d")
    d.deploy(tmp_path / "app" / "app.py")
    with d.client() as c:
        assert c.mutation("greet", name="ann") == ["hello, ann (#1)", "hello, ann (#1)"]  # two mounts, two tables
        assert c.mutation("greet", name="bo") == ["hello, bo (#2)", "hello, bo (#2)"]
        assert c.query("impl_loaded") is False  # the app's worker holds the client wrapper only
    mounts = {m["path"]: m for m in d.status()["deployment"]["mounts"]}
    assert mounts["byname"]["component"] == "greeter" and "greet" in mounts["byname"]["functions"]


def test_without_the_registration_the_package_is_refused_clearly(daemon_for, installed: Path,
                                                                  tmp_path: Path) -> None:
    (installed / "greeter-0.1.dist-info" / "entry_points.txt").unlink()
    path = os.pathsep.join(p for p in (str(installed), os.environ.get("PYTHONPATH", "")) if p)
    d: RunningDaemon = daemon_for(env={"PYTHONPATH": path}, scope_dir=tmp_path / "d")
    with pytest.raises(BulkheadError) as err:
        d.deploy(tmp_path / "app" / "app.py")
    assert "greeter" in err.value.message and "not allowed" in err.value.message
