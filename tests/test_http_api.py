"""The HTTP door through a real daemon: calls, keys, errors, idempotency, OpenAPI, the WebSocket, origins, curl."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from runtime.cli import launch
from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon
from tests.conftest import DaemonFor

ROOT = Path(__file__).resolve().parent.parent

APP = '''
from counter import Counter
from runtime import App, ComponentError, MutationCtx, QueryCtx, ActionCtx

app = App()
likes = Counter(app.use("counter", name="likes"))


@app.mutation
async def like(ctx: MutationCtx, post: str) -> int:
    return await likes.add(ctx, post)


@app.query
async def count(ctx: QueryCtx, post: str) -> int:
    return await likes.get(ctx, post)


@app.query
async def echo(ctx: QueryCtx, data: bytes) -> dict[str, bytes]:
    return {"back": data + b"!"}


@app.query
async def padded(ctx: QueryCtx, post: str, size: int) -> str:
    return str(await likes.get(ctx, post)) + " " + "x" * size


@app.query
async def blob(ctx: QueryCtx) -> bytes:
    return bytes([0, 255, 10])


@app.query(internal=True)
async def secret(ctx: QueryCtx) -> str:
    return "hidden"


@app.mutation
async def refuse(ctx: MutationCtx) -> None:
    raise ComponentError({"why": "no"})


@app.action
async def double(ctx: ActionCtx, x: int) -> int:
    return 2 * x
'''


def write_app(app_dir: Path) -> Path:
    shutil.copytree(ROOT / "examples" / "shop" / "counter", app_dir / "counter")
    (app_dir / "app.py").write_text(APP)
    return app_dir / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for: DaemonFor, tmp_path_factory: pytest.TempPathFactory) -> RunningDaemon:
    return module_daemon_for(write_app(tmp_path_factory.mktemp("httpapp")))


def api(daemon: RunningDaemon) -> str:
    return str(daemon.info["api"])


async def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers or {}) as r:
        return r.status, await r.json()


def post(daemon: RunningDaemon, kind: str, body: Any, *, admin: bool = False,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    h = dict(headers or {})
    if admin:
        h["Authorization"] = f"Bearer {daemon.admin_key}"
    return asyncio.run(_post(f"{api(daemon)}/api/{kind}", body, h))


def get_json(daemon: RunningDaemon, path: str, *, admin: bool = False) -> Any:
    async def go() -> Any:
        h = {"Authorization": f"Bearer {daemon.admin_key}"} if admin else {}
        async with aiohttp.ClientSession() as s, s.get(f"{api(daemon)}{path}", headers=h) as r:
            assert r.status == 200
            return await r.json()
    return asyncio.run(go())


# --- (a) calls -----------------------------------------------------------------------------------


def test_daemon_json_names_a_loopback_api(daemon: RunningDaemon) -> None:
    assert api(daemon).startswith("http://127.0.0.1:")


def test_the_api_listens_where_told_and_a_bad_address_is_named(tmp_path: Path) -> None:
    proc = launch.spawn(tmp_path / "bad", http="nowhere")
    with pytest.raises(BulkheadError, match="--http 'nowhere': expected HOST:PORT"):
        launch.wait_until_serving(proc, tmp_path / "bad", timeout_s=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc, info = launch.launch(tmp_path / "good", http=f"127.0.0.1:{port}")
    try:
        assert info["api"] == f"http://127.0.0.1:{port}"
        code, _ = _curl(f"{info['api']}/api/openapi.json")
        assert code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_public_calls_without_a_key(daemon: RunningDaemon) -> None:
    status, body = post(daemon, "mutation", {"path": "like", "args": {"post": "a"}})
    assert status == 200 and body["value"] == 1 and isinstance(body["commit_ts"], int)
    assert post(daemon, "query", {"path": "count", "args": {"post": "a"}})[1]["value"] == 1
    assert post(daemon, "action", {"path": "double", "args": {"x": 21}})[1]["value"] == 42


def test_the_same_call_from_zeromq_and_http_sees_one_state(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("like", post="shared")
        assert post(daemon, "query", {"path": "count", "args": {"post": "shared"}})[1]["value"] == 1
        post(daemon, "mutation", {"path": "like", "args": {"post": "shared"}})
        assert c.query("count", post="shared") == 2


def test_private_and_component_functions_need_the_admin_key(daemon: RunningDaemon) -> None:
    status, body = post(daemon, "query", {"path": "secret"})
    assert status == 403 and body["type"] == "IsolationError" and "internal" in body["message"]
    status, body = post(daemon, "query", {"path": "likes:get", "args": {"name": "a"}})
    assert status == 403 and body["code"] == "isolation"
    status, body = post(daemon, "query", {"path": "secret"}, headers={"Authorization": "Bearer wrong"})
    assert status == 403
    assert post(daemon, "query", {"path": "secret"}, admin=True)[1]["value"] == "hidden"
    status, body = post(daemon, "mutation", {"path": "likes:add", "args": {"name": "z", "amount": 5}}, admin=True)
    assert status == 200 and body["value"] == 5


def test_validation_errors_name_what_was_wrong(daemon: RunningDaemon) -> None:
    status, body = post(daemon, "query", {"path": "count", "args": {"post": 5}})
    assert status == 400 and body["type"] == "ValidationError" and "post" in body["message"]
    assert set(body) >= {"type", "code", "message", "data"}
    status, body = post(daemon, "query", {"path": "nope"})
    assert status == 404 and body["code"] == "not_found"
    status, body = post(daemon, "query", {"path": "like", "args": {"post": "a"}})
    assert status == 400 and body["code"] == "call_rule" and "mutation" in body["message"]
    status, body = post(daemon, "query", {"path": "count", "arg": {}})
    assert status == 400 and "'arg'" in body["message"]
    status, body = post(daemon, "query", {"args": {}})
    assert status == 400 and "path" in body["message"]
    status, body = post(daemon, "query", [1, 2])
    assert status == 400 and "object" in body["message"]
    status, body = post(daemon, "query", {"path": "echo", "args": {"data": {"$bytes": "%%%"}}})
    assert status == 400 and "args.data" in body["message"] and "base64" in body["message"]


def test_a_body_that_is_not_json_is_refused(daemon: RunningDaemon) -> None:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.post(f"{api(daemon)}/api/query", data=b"{not json",
                                                        headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.json()
    status, body = asyncio.run(go())
    assert status == 400 and body["code"] == "protocol" and "JSON" in body["message"]


def test_a_body_over_the_frame_limit_is_refused_by_size(daemon: RunningDaemon, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"path": "count", "args": {"post": "x" * int(daemon.info["max_frame_bytes"])}}))
    status, body = _curl("-H", "Content-Type: application/json", "--data-binary", f"@{big}", f"{api(daemon)}/api/query")
    assert status == 413 and body["code"] == "limit_exceeded" and "request body" in body["message"]


def test_unknown_routes_and_methods_answer_json(daemon: RunningDaemon) -> None:
    code, body = _curl(f"{api(daemon)}/api/nope")
    assert code == 404 and body["code"] == "not_found" and "/api/nope" in body["message"]
    code, body = _curl(f"{api(daemon)}/api/query")
    assert code == 405 and body["code"] == "protocol" and "POST /api/query" in body["message"]
    code, body = _curl(f"{api(daemon)}/api/ws")
    assert code == 400 and body["code"] == "protocol" and "Upgrade: websocket" in body["message"]


def test_component_error_keeps_its_data(daemon: RunningDaemon) -> None:
    status, body = post(daemon, "mutation", {"path": "refuse"})
    assert status == 422 and body["type"] == "ComponentError" and body["data"] == {"why": "no"}


def test_bytes_travel_as_dollar_bytes(daemon: RunningDaemon) -> None:
    raw = bytes(range(256))
    status, body = post(daemon, "query", {"path": "echo", "args": {"data": {"$bytes": base64.b64encode(raw).decode()}}})
    assert status == 200
    assert base64.b64decode(body["value"]["back"]["$bytes"]) == raw + b"!"


def _cli(daemon: RunningDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime", *args, "--data", str(daemon.data_dir)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_values_and_errors_are_what_the_cli_prints(daemon: RunningDaemon) -> None:
    cli = _cli(daemon, "run", "blob")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == post(daemon, "query", {"path": "blob"})[1]["value"] == {"$bytes": "AP8K"}
    cli = _cli(daemon, "run", "count", '{"post": 5}')
    assert cli.returncode != 0
    printed = json.loads(cli.stderr.strip().splitlines()[-1])
    status, body = post(daemon, "query", {"path": "count", "args": {"post": 5}})
    assert status == 400 and body == printed


def test_idempotency_key_applies_a_mutation_once(daemon: RunningDaemon) -> None:
    body = {"path": "like", "args": {"post": "idem"}, "idempotency_key": "k-1"}
    first = post(daemon, "mutation", body)
    again = post(daemon, "mutation", body)
    assert first[0] == again[0] == 200 and first[1]["value"] == again[1]["value"] == 1
    assert post(daemon, "query", {"path": "count", "args": {"post": "idem"}})[1]["value"] == 1
    other = post(daemon, "mutation", {**body, "idempotency_key": "k-2"})
    assert other[1]["value"] == 2
    # a key replays only the call it came with: other arguments under the same key are another call
    assert post(daemon, "mutation", {**body, "args": {"post": "idem2"}})[1]["value"] == 1
    assert post(daemon, "mutation", {**body, "args": {"post": "idem2"}})[1]["value"] == 1
    assert post(daemon, "query", {"path": "count", "args": {"post": "idem2"}})[1]["value"] == 1
    status, err = post(daemon, "action", {"path": "double", "args": {"x": 1}, "idempotency_key": "k"})
    assert status == 400 and "idempotency_key" in err["message"]


def test_concurrent_resends_of_one_key_apply_once(daemon: RunningDaemon) -> None:
    body = {"path": "like", "args": {"post": "race"}, "idempotency_key": "race"}

    async def go() -> list[tuple[int, Any]]:
        return await asyncio.gather(*(_post(f"{api(daemon)}/api/mutation", body) for _ in range(8)))

    replies = asyncio.run(go())
    assert {(status, reply["value"]) for status, reply in replies} == {(200, 1)}
    assert post(daemon, "query", {"path": "count", "args": {"post": "race"}})[1]["value"] == 1


# --- (b) OpenAPI ------------------------------------------------------------------------------------


def _validator(doc: dict[str, Any], ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**doc, "$ref": ref})


def test_openapi_document_describes_the_public_functions(daemon: RunningDaemon) -> None:
    doc = get_json(daemon, "/api/openapi.json")
    validate_openapi(doc)
    fns = doc["x-bulkhead-functions"]
    # not the internal one, no component's
    assert set(fns) == {"like", "count", "echo", "blob", "padded", "refuse", "double"}
    assert {p for p in doc["paths"]} >= {"/api/query", "/api/mutation", "/api/action", "/api/openapi.json", "/api/ws"}
    admin_doc = get_json(daemon, "/api/openapi.json", admin=True)
    validate_openapi(admin_doc)
    assert {"secret", "likes:add", "likes:get"} <= set(admin_doc["x-bulkhead-functions"])


def test_openapi_schemas_accept_the_calls_made_and_refuse_bad_ones(daemon: RunningDaemon) -> None:
    doc = get_json(daemon, "/api/openapi.json", admin=True)
    calls = [("mutation", {"path": "like", "args": {"post": "oa"}, "idempotency_key": "oa"}),
             ("query", {"path": "count", "args": {"post": "oa"}}),
             ("query", {"path": "echo", "args": {"data": {"$bytes": "AAE="}}}),
             ("action", {"path": "double", "args": {"x": 3}}),
             ("mutation", {"path": "likes:add", "args": {"name": "oa"}})]
    for kind, body in calls:
        request_schema = doc["paths"][f"/api/{kind}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**doc, **request_schema}).validate(body)
        status, reply = post(daemon, kind, body, admin=True)
        assert status == 200, reply
        fn = doc["x-bulkhead-functions"][body["path"]]
        assert fn["kind"] == kind
        _validator(doc, fn["returns"]).validate(reply["value"])
    request_schema = doc["paths"]["/api/query"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator({**doc, **request_schema}).validate({"path": "count", "args": {"post": 5}})
    for bad in ({"path": "like", "args": {"post": "a"}}, {"path": "echo", "args": {"data": "AAE="}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator({**doc, **request_schema}).validate(bad)


# --- (c) subscriptions over the WebSocket -------------------------------------------------------------


def test_websocket_subscription_sees_a_change_made_over_zeromq(daemon: RunningDaemon) -> None:
    async def go() -> list[Any]:
        seen = []
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "count", "args": {"post": "ws"}})
            await ws.send_json({"op": "subscribe", "id": 2, "path": "secret"})
            replies = [await ws.receive_json(timeout=60) for _ in range(3)]
            assert {"type": "subscribed", "id": 1} in replies
            errors = [r for r in replies if r["type"] == "error"]
            assert errors and errors[0]["id"] == 2 and errors[0]["error"]["code"] == "isolation"
            first = next(r for r in replies if r["type"] == "transition")
            seen.append(first)
            with daemon.client() as c:
                await asyncio.to_thread(c.mutation, "like", post="ws")
            seen.append(await ws.receive_json(timeout=60))
            await ws.send_json({"op": "unsubscribe", "id": 1})
            assert await ws.receive_json(timeout=60) == {"type": "unsubscribed", "id": 1}
        return seen

    first, change = asyncio.run(go())
    assert first["updates"] == [{"id": 1, "ok": True, "value": 0}]
    assert change["type"] == "transition" and change["updates"] == [{"id": 1, "ok": True, "value": 1}]
    assert change["ts"] > first["ts"]


def test_websocket_subscriptions_move_together(daemon: RunningDaemon) -> None:
    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "count", "args": {"post": "t1"}})
            await ws.send_json({"op": "subscribe", "id": 2, "path": "count", "args": {"post": "t2"}})
            got: list[Any] = []
            values: dict[int, Any] = {}
            while values != {1: 0, 2: 0}:
                msg = await ws.receive_json(timeout=60)
                if msg["type"] == "transition":
                    values.update({u["id"]: u["value"] for u in msg["updates"]})
                    got.append(msg)
            status, _ = await _post(f"{api(daemon)}/api/mutation", {"path": "like", "args": {"post": "t2"}})
            assert status == 200
            msg = await ws.receive_json(timeout=60)
            got.append(msg)
            return got

    got = asyncio.run(go())
    assert got[-1]["updates"] == [{"id": 2, "ok": True, "value": 1}]  # only what changed, at one ts


def test_a_mutation_over_the_websocket_answers_after_its_subscriptions_show_it(daemon: RunningDaemon) -> None:
    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "count", "args": {"post": "ryw"}})
            assert await ws.receive_json(timeout=60) == {"type": "subscribed", "id": 1}
            assert (await ws.receive_json(timeout=60))["updates"] == [{"id": 1, "ok": True, "value": 0}]
            await ws.send_json({"op": "mutation", "id": 9, "path": "like", "args": {"post": "ryw"},
                                "idempotency_key": "ryw"})
            got = [await ws.receive_json(timeout=60) for _ in range(2)]
            await ws.send_json({"op": "query", "id": 10, "path": "secret"})
            got.append(await ws.receive_json(timeout=60))
            return got

    transition, result, refused = asyncio.run(go())
    assert transition["type"] == "transition" and transition["updates"] == [{"id": 1, "ok": True, "value": 1}]
    assert result["type"] == "result" and result["id"] == 9 and result["value"] == 1
    assert transition["ts"] >= result["commit_ts"]
    assert refused["type"] == "error" and refused["id"] == 10 and refused["error"]["code"] == "isolation"


def test_the_admin_key_on_the_upgrade_reaches_internal_queries(daemon: RunningDaemon) -> None:
    async def go() -> Any:
        headers = {"Authorization": f"Bearer {daemon.admin_key}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws", headers=headers) as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "secret"})
            await ws.send_json({"op": "subscribe", "id": 2, "path": "likes:get", "args": {"name": "a"}})
            msgs = [await ws.receive_json(timeout=60) for _ in range(3)]
            while sum(len(m.get("updates", [])) for m in msgs) < 2:
                msgs.append(await ws.receive_json(timeout=60))
            return {u["id"]: u for m in msgs for u in m.get("updates", [])}

    updates = asyncio.run(go())
    assert updates[1] == {"id": 1, "ok": True, "value": "hidden"}
    assert updates[2]["ok"] is True and isinstance(updates[2]["value"], int)


def test_a_failing_subscription_sends_its_error_and_a_closed_socket_leaves_nothing(daemon: RunningDaemon) -> None:
    async def go() -> tuple[Any, int]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 5, "path": "count", "args": {"post": 7}})
            assert await ws.receive_json(timeout=60) == {"type": "subscribed", "id": 5}
            failed = await ws.receive_json(timeout=60)
            with daemon.client(admin=True) as c:
                during = (await asyncio.to_thread(c.admin, "status"))["subscriptions"]["clients"]
            return failed, during

    failed, during = asyncio.run(go())
    assert during >= 1
    [update] = failed["updates"]
    assert update["id"] == 5 and update["ok"] is False
    assert update["error"]["type"] == "ValidationError" and "post" in update["error"]["message"]
    with daemon.client(admin=True) as c:  # the closed socket's subscriptions went with it
        for _ in range(600):
            if c.admin("status")["subscriptions"]["clients"] == 0:
                break
            time.sleep(0.05)  # the daemon notices the close asynchronously
        assert c.admin("status")["subscriptions"]["clients"] == 0


def test_a_websocket_that_stops_reading_holds_back_transitions_and_then_gets_the_latest(
        daemon: RunningDaemon) -> None:
    """A reader that stalls fills the socket, then the door's queue: the service is told "full" and keeps the
    values unsent (no unbounded buffering); once the client reads again it reaches the latest value."""
    size, mutations = 200_000, 60

    async def go() -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws", max_msg_size=0) as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "padded", "args": {"post": "slow", "size": size}})
            with daemon.client(admin=True) as c:
                for _ in range(mutations):  # not reading meanwhile
                    await asyncio.to_thread(c.mutation, "like", post="slow")
                retries = (await asyncio.to_thread(c.admin, "status"))["subscriptions"]["push_retries"]
            last = ""
            while not last.startswith(f"{mutations} "):
                msg = await ws.receive_json(timeout=60)
                for u in msg.get("updates", []):
                    last = u["value"]
            return retries, last

    retries, last = asyncio.run(go())
    assert retries > 0
    assert last == f"{mutations} " + "x" * size


def test_a_stopping_daemon_closes_its_websockets(daemon_for: DaemonFor, tmp_path: Path) -> None:
    d = daemon_for(write_app(tmp_path / "app"))

    async def go() -> aiohttp.WSMsgType:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(d)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "count", "args": {"post": "bye"}})
            assert (await ws.receive_json(timeout=60))["type"] == "subscribed"
            assert (await ws.receive_json(timeout=60))["type"] == "transition"
            with d.client(admin=True) as c:
                await asyncio.to_thread(c.admin, "stop")
            return (await ws.receive(timeout=60)).type

    assert asyncio.run(go()) == aiohttp.WSMsgType.CLOSE
    assert d.proc is not None and d.proc.wait(timeout=60) == 0


def test_a_redeploy_changes_the_document_and_reruns_websocket_subscriptions(daemon_for: DaemonFor,
                                                                             tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    d = daemon_for(app)
    assert "added" not in get_json(d, "/api/openapi.json")["x-bulkhead-functions"]

    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(d)}/api/ws") as ws:
            await ws.send_json({"op": "subscribe", "id": 1, "path": "blob"})
            assert (await ws.receive_json(timeout=60))["type"] == "subscribed"
            first = await ws.receive_json(timeout=60)
            app.write_text(APP.replace("bytes([0, 255, 10])", "b'new'") +
                           "\n\n@app.query\nasync def added(ctx: QueryCtx) -> int:\n    return 1\n")
            await asyncio.to_thread(d.deploy, app)
            return [first, await ws.receive_json(timeout=60)]

    first, after = asyncio.run(go())
    assert first["updates"] == [{"id": 1, "ok": True, "value": {"$bytes": "AP8K"}}]
    assert after["updates"] == [{"id": 1, "ok": True, "value": {"$bytes": base64.b64encode(b"new").decode()}}]
    doc = get_json(d, "/api/openapi.json")
    assert doc["x-bulkhead-functions"]["added"]["kind"] == "query"
    validate_openapi(doc)


def test_websocket_refuses_bad_messages_by_name(daemon: RunningDaemon) -> None:
    async def go() -> list[Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{api(daemon)}/api/ws") as ws:
            await ws.send_str("{nope")
            await ws.send_json({"op": "subscribe", "id": "x", "path": "count"})
            await ws.send_json({"op": "subscribe", "id": 3, "path": "like", "args": {"post": "a"}})
            await ws.send_json({"op": "frob", "id": 4})
            return [await ws.receive_json(timeout=60) for _ in range(4)]

    bad_json, bad_id, not_query, bad_op = asyncio.run(go())
    assert bad_json["error"]["code"] == "protocol"
    assert "'id'" in bad_id["error"]["message"]
    assert not_query["id"] == 3 and "only queries" in not_query["error"]["message"]
    assert "'frob'" in bad_op["error"]["message"]


# --- (d) origins ------------------------------------------------------------------------------------


def test_a_foreign_browser_origin_is_refused(daemon: RunningDaemon) -> None:
    body = {"path": "like", "args": {"post": "csrf"}}
    status, err = post(daemon, "mutation", body, headers={"Origin": "http://evil.example"})
    assert status == 403 and err["code"] == "origin" and "evil.example" in err["message"]
    assert post(daemon, "query", {"path": "count", "args": {"post": "csrf"}})[1]["value"] == 0
    status, _ = post(daemon, "mutation", body, headers={"Origin": "null"})
    assert status == 403
    status, ok = post(daemon, "mutation", body, headers={"Origin": api(daemon)})
    assert status == 200 and ok["value"] == 1
    port = api(daemon).rsplit(":", 1)[1]
    status, ok = post(daemon, "mutation", body, headers={"Origin": f"http://localhost:{port}"})
    assert status == 200 and ok["value"] == 2
    status, _ = post(daemon, "mutation", body, headers={"Origin": "http://localhost:1"})
    assert status == 403

    async def ws_open(origin: str) -> int:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(f"{api(daemon)}/api/ws", headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(ws_open("http://evil.example")) == 403
    assert asyncio.run(ws_open(api(daemon))) == 101


def test_a_foreign_host_header_is_refused(daemon: RunningDaemon) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header gives it away."""
    port = api(daemon).rsplit(":", 1)[1]
    code, err = _curl("-H", f"Host: evil.example:{port}", f"{api(daemon)}/api/openapi.json")
    assert code == 403 and "evil.example" in err["message"]
    code, _ = _curl("-H", f"Host: localhost:{port}", f"{api(daemon)}/api/openapi.json")
    assert code == 200


def test_a_form_post_is_not_a_call(daemon: RunningDaemon) -> None:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.post(f"{api(daemon)}/api/mutation", data={"path": "like"}) as r:
            return r.status, await r.json()
    status, err = asyncio.run(go())
    assert status == 400 and "application/json" in err["message"]


# --- a non-Python client ------------------------------------------------------------------------------


def _curl(*argv: str) -> tuple[int, Any]:
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *argv], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


def test_curl_calls_and_reads_the_openapi_document(daemon: RunningDaemon) -> None:
    assert shutil.which("curl"), "curl is needed (.ci/run installs it)"
    base = api(daemon)
    code, body = _curl("-H", "Content-Type: application/json", "-d", '{"path": "like", "args": {"post": "curl"}}',
                       f"{base}/api/mutation")
    assert code == 200 and body["value"] == 1
    code, body = _curl("-H", "Content-Type: application/json", "-d", '{"path": "secret"}', f"{base}/api/query")
    assert code == 403 and body["type"] == "IsolationError"
    code, body = _curl("-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {daemon.admin_key}",
                       "-d", '{"path": "secret"}', f"{base}/api/query")
    assert code == 200 and body["value"] == "hidden"
    code, doc = _curl(f"{base}/api/openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.") and "count" in doc["x-bulkhead-functions"]


NODE_CLIENT = r"""
const base = process.argv[1];
const ws = new WebSocket(base.replace("http", "ws") + "/api/ws");
const seen = [];
const timer = setTimeout(() => { console.error("timed out", JSON.stringify(seen)); process.exit(2); }, 60000);
ws.onopen = () => ws.send(JSON.stringify({op: "subscribe", id: 1, path: "count", args: {post: "node"}}));
ws.onmessage = async (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.type !== "transition") return;
  seen.push(msg.updates);
  if (seen.length === 1) {
    const r = await fetch(base + "/api/mutation", {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify({path: "like", args: {post: "node"}})});
    seen.push((await r.json()).value);
  } else {
    clearTimeout(timer);
    console.log(JSON.stringify(seen));
    ws.close();
  }
};
"""


def test_node_subscribes_over_the_websocket_and_calls_with_fetch(daemon: RunningDaemon) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the non-Python WebSocket client (the distribution's nodejs package)"
    out = subprocess.run([node, "--experimental-websocket", "-e", NODE_CLIENT, api(daemon)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, called, change = json.loads(out.stdout.strip().splitlines()[-1])
    assert first == [{"id": 1, "ok": True, "value": 0}]
    assert called == 1
    assert change == [{"id": 1, "ok": True, "value": 1}]
