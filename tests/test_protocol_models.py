"""The typed contracts between processes: syscall arguments, code specs, manifests, worker config.

Each model must accept exactly what is sent today and give back the same bytes
(``values.pack(model.model_dump()) == values.pack(sent)``), and refuse anything
else with an error naming the operation and each bad field.  What is "sent
today" is recorded from the real worker-side code: the ctx implementation
talking to a recording channel, and the example and test apps loaded through
the worker's own loader (in a fresh interpreter; no daemon).
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel

from runtime import App
from runtime.app import FunctionRef
from runtime.errors import ValidationError
from runtime.limits import Limits
from runtime.protocol import deploy, syscalls
from runtime.protocol.deploy import CODE_SPEC, AppCode, ComponentCode, Manifest, WorkerConfig, component_code
from runtime.protocol.syscalls import ARGS_MODEL, SyscallOp, parse_args, parse_buffered
from runtime.values import pack

ROOT = Path(__file__).resolve().parents[1]
APP_DIRS = sorted(str(p.parent.relative_to(ROOT)) for d in ("examples", "tests") for p in (ROOT / d).rglob("app.py"))


def same_bytes(model: BaseModel, sent: Any) -> bool:
    return pack(model.model_dump()) == pack(sent)


# --- syscalls: every op, as the ctx sends it ------------------------------------------------------------


class Recorder:
    """A Channel that records every syscall and answers like the coordinator would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.pre: list[tuple[str, dict[str, Any]]] = []

    async def syscall(self, token: str, op: str, args: dict[str, Any],
                      pre: list[tuple[str, dict[str, Any]]] | None = None, reads: list[Any] | None = None) -> Any:
        self.sent.append((op, args))
        self.pre += pre or []
        doc = {"n": 1, "_id": "d1", "_creation_time": 1.0}
        return {
            "get": {"doc": doc, "table": "t"},
            "scan": {"docs": [doc], "last": b"\x01k", "done": args.get("after") is not None},
            "paginate": {"page": [doc], "is_done": True, "continue_cursor": "c"},
            "insert": "d2", "handle": "function://x.y", "schedule": "j1", "storage_url": "http://u",
            "storage_upload_url": "http://up", "storage_store": "s1", "storage_get": b"bytes",
        }.get(op)


def record_ctx_syscalls() -> Recorder:
    """Drive every ctx method that makes a syscall, through the worker's real ctx implementation."""
    from sandbox.ctx import CTX_CLASSES, WorkerInvocation

    class Doc(BaseModel):
        n: int

    app = App()
    app.table("t", indexes={"by_n": ["n"]})(Doc)
    rec = Recorder()
    log = logging.getLogger("test")

    def ctx(kind: str) -> Any:
        return CTX_CLASSES[kind](WorkerInvocation(rec, app, "tok"), now=100.0, seed=1, env={}, log=log)

    async def drive() -> None:
        m = ctx("mutation")
        await m.db.get("d1")
        await m.db.query("t").with_index("by_n", lambda q: q.eq("n", 1)).order("desc").take(1)
        await m.db.query("t").filter(lambda d: False).collect()  # two scan batches: the second has "after"
        await m.db.query("t").paginate(None, 10)
        await m.db.insert("t", {"n": 2})  # the worker knows no table numbers: sent now
        m._inv.set_id_source({"t": 5}, 100.0, 1)
        await m.db.insert("t", {"n": 5})  # now it mints the Id: buffered
        await m.db.patch("d1", {"n": 3})  # known: buffered
        await m.db.delete("d1")  # known: buffered
        await m.db.replace("d9", {"n": 4})  # unknown: read, then buffered
        await m.db.delete("other")  # unknown: sent now
        await m.run_query(FunctionRef("", "q"), a=1)  # ships the buffered writes in "pre"
        await m.run_mutation(FunctionRef("child", "m"), b=[1, "x"])
        await m.run_mutation("function://handle.sig")
        await m.function_handle(FunctionRef("", "q"))
        await m.scheduler.run_after(5, FunctionRef("", "m"), c=None)
        await m.scheduler.run_at(200, "function://handle.sig")
        await m.scheduler.cancel("j1")
        await m.storage.get_url("s1")
        await m.storage.generate_upload_url()
        await m.storage.delete("s1")
        m._inv.buffer("delete", {"id": "d1"})
        await m.db._call("flush", {})
        a = ctx("action")
        await a.storage.store(b"data", "text/plain")
        await a.storage.store(b"data")
        await a.storage.get("s1")
        await a.run_action(FunctionRef("", "act"))

    asyncio.run(drive())
    return rec


@pytest.fixture(scope="module")
def recorded() -> Recorder:
    return record_ctx_syscalls()


def test_every_op_has_exactly_one_model() -> None:
    assert set(ARGS_MODEL) == set(SyscallOp)
    for op, model in ARGS_MODEL.items():
        assert model.op is op
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")


def test_the_ctx_issues_every_op_and_each_one_parses_to_the_same_bytes(recorded: Recorder) -> None:
    # a replace is always of a document the invocation has just read: the ctx only ever buffers it
    assert {op for op, _ in recorded.sent} == set(SyscallOp) - {SyscallOp.REPLACE}
    for op, args in recorded.sent:
        model = parse_args(op, args)
        assert type(model) is ARGS_MODEL[SyscallOp(op)]
        assert same_bytes(model, args), (op, args, model.model_dump())


def test_buffered_writes_parse_to_the_same_bytes(recorded: Recorder) -> None:
    assert {op for op, _ in recorded.pre} == {"insert", "replace", "delete"}
    for op, args in recorded.pre:
        assert same_bytes(parse_buffered(op, args), args)
        assert same_bytes(parse_args(op, args), args)


def test_fields_come_out_typed(recorded: Recorder) -> None:
    from runtime.limits import WORKER_SCAN_BATCH as SCAN_BATCH

    scans = [parse_args(op, a) for op, a in recorded.sent if op == "scan"]
    assert all(isinstance(s, syscalls.ScanArgs) for s in scans) and len(scans) == 3
    assert scans[0].range == [("eq", "n", 1)] and scans[0].order == "desc" and scans[0].max_docs == 1
    assert scans[1].after is None and scans[2].after == b"\x01k" and scans[2].max_docs == SCAN_BATCH
    runs = [parse_args(op, a) for op, a in recorded.sent if op == "run"]
    assert isinstance(runs[1], syscalls.RunArgs) and runs[1].ref == syscalls.RefPath(path="child", name="m")
    assert isinstance(runs[2], syscalls.RunArgs) and runs[2].ref == syscalls.RefHandle(handle="function://handle.sig")
    assert runs[1].args == {"b": [1, "x"]} and runs[1].kind == "mutation"


@pytest.mark.parametrize(("op", "args", "message"), [
    ("get", {"id": 5}, "malformed 'get' syscall: id: Input should be a valid string"),
    ("get", {}, "malformed 'get' syscall: id: Field required"),
    ("get", [1], "malformed 'get' syscall: args: Input should be a valid dictionary"),
    ("get", {"id": "x", "mount": "good"}, "malformed 'get' syscall: mount: Extra inputs are not permitted"),
    ("scan", {"table": "t", "index": "i", "range": [["ne", "a", 1]], "order": "up", "limit": True, "after": "x"},
     ("malformed 'scan' syscall: range.0.0: Input should be 'eq', 'gt', 'gte', 'lt' or 'lte'; order: Input should "
      "be 'asc' or 'desc'; limit: Input should be a valid integer; after: Input should be a valid bytes")),
    ("paginate", {"table": "t", "index": "i", "range": [], "order": "asc", "cursor": None, "num_items": "5"},
     "malformed 'paginate' syscall: num_items: Input should be a valid integer"),
    ("run", {"ref": {"path": "", "name": "f", "handle": "h"}, "kind": "query", "args": {}},
     "malformed 'run' syscall: ref.path: Extra inputs are not permitted; ref.name: Extra inputs are not permitted"),
    ("run", {"ref": "f", "kind": "system", "args": {}},
     "malformed 'run' syscall: ref: a function reference is {path, name} or {handle}; kind: Input should be"),
    ("run", {"ref": {"name": "f"}, "kind": "query", "args": {1: 2}},
     "malformed 'run' syscall: ref.path: Field required; args.1.[key]: Input should be a valid string"),
    ("handle", {"ref": {"handle": "function://x"}},
     "malformed 'handle' syscall: ref.path: Field required; ref.name: Field required; ref.handle: Extra inputs"),
    ("schedule", {"ref": {"path": "", "name": "f"}, "at": math.nan, "args": {}},
     "malformed 'schedule' syscall: at: Input should be a finite number"),
    ("schedule", {"ref": {"path": "", "name": "f"}, "at": False, "args": {}},
     "malformed 'schedule' syscall: at: Input should be a valid number"),
    ("storage_store", {"data": "text", "content_type": None}, "malformed 'storage_store' syscall: data: Input"),
    ("flush", {"x": 1}, "malformed 'flush' syscall: x: Extra inputs are not permitted"),
])
def test_malformed_args_name_the_op_and_each_bad_field(op: str, args: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_args(op, args)
    assert info.value.message.startswith(message), info.value.message
    assert len(info.value.issues) == info.value.message.count(";") + 1


def test_an_unknown_op_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match=r"^unknown syscall 'xyz'$"):
        parse_args("xyz", {})


def test_only_insert_replace_and_delete_may_be_buffered() -> None:
    with pytest.raises(ValidationError, match="only insert, replace and delete may be buffered, not 'scan'"):
        parse_buffered("scan", {"table": "t"})
    with pytest.raises(ValidationError, match="malformed buffered 'replace': doc: Field required"):
        parse_buffered("replace", {"id": "x"})


def test_models_are_frozen() -> None:
    args = parse_args("get", {"id": "a"})
    with pytest.raises(Exception, match="frozen"):
        args.id = "b"  # type: ignore[misc,union-attr]


# --- code specs, manifests, worker config -----------------------------------------------------------------

LOAD_APPS = r"""
import sys
from pathlib import Path

import msgpack

import sandbox
from runtime.cli.main import resolve_app
from runtime.protocol.deploy import CODE_SPEC, component_code
from sandbox import loader
from sandbox.worker import build_manifest, load_definition

components = str(Path(sandbox.__file__).resolve().parents[1] / "components")
out = []
for app in sys.argv[2:]:
    code = resolve_app(app)
    roots, saved = [code["app_dir"], components], list(sys.path)
    loader.install(roots, [code["app_dir"]], loader.read_sources(roots))
    rows = []
    try:
        todo = [("", code)]
        while todo:  # the mount tree, as a deploy walks it
            path, c = todo.pop(0)
            definition = load_definition(CODE_SPEC.validate_python(c))
            build_manifest(definition)
            raw = definition.manifest()
            rows.append([app, path, c, raw])
            for child in raw["children"]:
                cpath = f"{path}/{child['name']}" if path else child["name"]
                todo.append((cpath, component_code(child["spec"], code["app_dir"]).model_dump()))
        out += rows
    except Exception as exc:  # an app made to be refused: say how
        out.append([app, None, type(exc).__name__, str(exc)])
    finally:  # the next app has modules of the same names
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, loader.RestrictedFinder)]
        sys.path[:] = saved
        for name, mod in list(sys.modules.items()):
            if (getattr(mod, "__file__", None) or "").startswith((str(Path(code["app_dir"]).resolve()), components)):
                del sys.modules[name]
with open(sys.argv[1], "wb") as f:
    f.write(msgpack.packb(out))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """Every example and test app, each mount loaded as its worker loads it: ``(app, mount, code, manifest)``.

    Apps made to be refused (a forbidden import) are left out; nothing else may fail to load.
    """
    out = tmp_path_factory.mktemp("manifests") / "out.msgpack"
    proc = subprocess.run([sys.executable, "-c", LOAD_APPS, str(out), *APP_DIRS], cwd=ROOT, timeout=120,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    rows = msgpack.unpackb(out.read_bytes(), raw=False)
    refused = {r[0]: f"{r[2]}: {r[3]}" for r in rows if r[1] is None}
    assert all(why.startswith("RestrictedImportError") for why in refused.values()), refused
    assert {r[0] for r in rows} == set(APP_DIRS)
    assert not any(app.startswith("examples/") for app in refused)
    return [tuple(r) for r in rows if r[1] is not None]  # type: ignore[misc]


def test_real_manifests_validate_and_round_trip(loaded: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> None:
    kinds: set[str] = set()
    for app, mount, _code, raw in loaded:
        manifest = Manifest.model_validate(raw)
        assert manifest.model_dump() == raw and same_bytes(manifest, raw), (app, mount)
        kinds |= {c.schedule.kind for c in manifest.crons}
    assert {"interval", "daily", "cron"} <= kinds  # the crons of tests/apps/sched
    assert any(m.tables and m.children for m in (Manifest.model_validate(r[3]) for r in loaded))


def test_real_code_specs_round_trip(loaded: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> None:
    for app, mount, code, _raw in loaded:
        spec = CODE_SPEC.validate_python(code)
        assert isinstance(spec, AppCode if mount == "" else ComponentCode)
        assert spec.model_dump() == code and same_bytes(spec, code), (app, mount)


def test_component_code_resolves_every_kind_of_use_spec(
        loaded: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> None:
    # the one resolution of use() specs (the coordinator calls it too): module:attr, a registered name, a path
    base = {"kind": "component", "app_dir": "/x"}
    assert component_code("pkg.mod:attr", "/x").model_dump() == {
        **base, "display": "pkg.mod:attr", "module": "pkg.mod", "attr": "attr", "explicit": True}
    assert component_code("pkg.mod", "/x").model_dump() == {
        **base, "display": "pkg.mod", "module": "pkg.mod", "attr": "component", "explicit": False}
    assert component_code("sharded_counter", "/x").model_dump() == {
        **base, "display": "sharded_counter", "module": "components.sharded_counter", "attr": "component",
        "explicit": False}
    for _a, _m, code, raw in loaded:  # every child spec of the real apps resolves to a loadable module
        for child in raw["children"]:
            resolved = component_code(child["spec"], code["app_dir"])
            assert resolved.module and resolved.app_dir == code["app_dir"], child


def test_worker_config_round_trips_and_refuses_what_a_worker_cannot_use() -> None:
    config = {"endpoint": "ipc:///tmp/w1.sock", "mount": "bank/transfers",
              "code": {"kind": "component", "app_dir": "/a", "display": "counter", "module": "counter",
                       "attr": "component", "explicit": False},
              "env": {"K": "v"}, "limits": deploy.limit_fields(Limits()), "network": False, "uid": None,
              "hello_secret": "s" * 32}
    parsed = WorkerConfig.model_validate(config)
    assert parsed.model_dump() == config and same_bytes(parsed, config)
    assert parsed.make_limits() == Limits() and parsed.label == "bank/transfers"
    assert isinstance(parsed.code, ComponentCode) and parsed.code.app_dir == "/a"
    with pytest.raises(ValidationError, match="invalid worker config: limits: Value error, unknown limits bogus"):
        deploy.parse(WorkerConfig, {**config, "limits": {"bogus": 1}}, "worker config")
    with pytest.raises(ValidationError, match="code: Unable to extract tag"):
        deploy.parse(WorkerConfig, {**config, "code": {"module": "m"}}, "worker config")
    with pytest.raises(ValidationError, match="uid: Input should be a valid integer"):
        deploy.parse(WorkerConfig, {**config, "uid": "0"}, "worker config")
    with pytest.raises(ValidationError, match="hello_secret: String should have at least 16 characters"):
        deploy.parse(WorkerConfig, {**config, "hello_secret": "short"}, "worker config")


def test_a_worker_refuses_a_malformed_config_and_says_why() -> None:
    bad = msgpack.packb({"endpoint": "ipc:///nowhere", "mount": ""})
    proc = subprocess.run([sys.executable, "-m", "sandbox.worker", "(app)"], input=bad, capture_output=True,
                          cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2
    assert b"bulkhead-worker: invalid worker config: code: Field required" in proc.stdout


def test_a_bad_manifest_is_refused_in_the_worker() -> None:
    from sandbox.worker import build_manifest

    app = App()
    good = build_manifest(app)
    assert good.name == "" and good.functions == {} and good.crons == []

    class Broken(App):
        def manifest(self) -> dict[str, Any]:
            return {**super().manifest(), "network": "yes"}

    with pytest.raises(ValidationError, match="invalid manifest: network: Input should be a valid boolean"):
        build_manifest(Broken())


def test_import_runtime_stays_light() -> None:
    code = ("import sys, runtime, runtime.protocol.deploy, runtime.protocol.syscalls; "
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert not any(m.startswith(("runtime.coordinator", "runtime.storage", "lmdb", "sandbox"))
                   for m in out.split())
    light = subprocess.run([sys.executable, "-c", "import sys, runtime; print('\\n'.join(sys.modules))"],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert "runtime.protocol.syscalls" not in light.split() and "runtime.protocol.deploy" not in light.split()
