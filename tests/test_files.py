"""File storage through a real daemon and its HTTP endpoint: uploads, URLs, store/get, deletion, isolation."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from runtime.errors import CallRuleError, IsolationError
from runtime.testing import CLOCK, RunningDaemon, start_daemon, wait_for

APP = Path(__file__).parent / "apps" / "files" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env=CLOCK)


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def upload(url: str, data: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def blobs(d: RunningDaemon) -> set[str]:
    root = d.data_dir / "files"
    return {p.name for sub in root.iterdir() if sub.name != "tmp" for p in sub.iterdir()}


def test_store_from_an_action_then_read_and_serve_it(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        sid = c.action("store", text="hello files", content_type="text/plain")
        meta = c.query("meta", storage_id=sid)
        assert meta["sha256"] == hashlib.sha256(b"hello files").hexdigest() and meta["size"] == 11
        assert meta["content_type"] == "text/plain"
        assert c.action("read", storage_id=sid) == b"hello files"
        status, body, ctype = fetch(c.query("url", storage_id=sid))
    assert (status, body) == (200, b"hello files") and ctype.startswith("text/plain")


def test_a_50_mb_upload_round_trip(daemon: RunningDaemon) -> None:
    data = os.urandom(50 * 1024 * 1024)
    with daemon.client() as c:
        status, reply = upload(c.mutation("upload_url"), data)
        assert status == 200, reply
        sid = reply["storage_id"]
        assert c.query("meta", storage_id=sid)["size"] == len(data)
        status, body, _ = fetch(c.query("url", storage_id=sid))
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert reply["sha256"] in blobs(daemon)


def test_an_interrupted_upload_leaves_nothing_behind(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        before, files_before = c.query("count"), blobs(daemon)
        url = urllib.parse.urlparse(c.mutation("upload_url"))
    aborted = daemon.status()["files"]["aborted_uploads"]
    with socket.create_connection((url.hostname, url.port)) as s:
        s.sendall(f"POST {url.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024 * 1024}\r\n\r\n".encode())
        s.sendall(os.urandom(1024 * 1024))  # a tenth of what it promised, then the connection drops
    wait_for(lambda: daemon.status()["files"]["aborted_uploads"] == aborted + 1, what="the upload to be dropped")
    with daemon.client() as c:
        assert c.query("count") == before
    assert blobs(daemon) == files_before
    assert list((daemon.data_dir / "files" / "tmp").iterdir()) == []


def test_upload_urls_expire_and_forged_urls_are_refused(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        url = c.mutation("upload_url")
        sid = c.action("store", text="keep")
        good = c.query("url", storage_id=sid)
    daemon.advance_clock(3601)
    status, reply = upload(url, b"late")
    assert status == 403 and "expired" in reply["error"]["message"]
    status, body, _ = fetch(good[:-3] + ("000" if not good.endswith("000") else "111"))
    assert status == 403 and b"forged" in body


def test_deleting_a_file_revokes_its_url_and_removes_the_blob_when_unused(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        one, two = c.action("store", text="same bytes"), c.action("store", text="same bytes")
        sha = hashlib.sha256(b"same bytes").hexdigest()
        assert one != two and sha in blobs(daemon)  # one blob, two files
        url_one = c.query("url", storage_id=one)
        c.mutation("delete", storage_id=one)
        assert fetch(url_one)[0] == 404 and c.query("url", storage_id=one) is None
        assert sha in blobs(daemon)  # still named by the other file
        assert fetch(c.query("url", storage_id=two))[1] == b"same bytes"
        c.mutation("delete", storage_id=two)
    wait_for(lambda: sha not in blobs(daemon), what="the unused blob to be removed")


def test_another_mounts_storage_id_is_refused(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        theirs = c.action("child_file")
        with pytest.raises(IsolationError):
            c.query("url", storage_id=theirs)
        with pytest.raises(IsolationError):
            c.mutation("delete", storage_id=theirs)
        with pytest.raises(CallRuleError, match="for actions only"):
            c.mutation("store_in_mutation")
    with daemon.client(admin=True) as admin:
        box_files = admin.admin("data", mount="box", table="_storage")
    assert [f["_id"] for f in box_files] == [theirs]


def test_files_survive_kill_9_of_the_daemon(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as d:
        with d.client() as c:
            status, reply = upload(c.mutation("upload_url"), b"durable bytes", "text/plain")
            assert status == 200
        d.kill()
        d.start()
        with d.client() as c:
            status, body, _ = fetch(c.query("url", storage_id=reply["storage_id"]))
    assert (status, body) == (200, b"durable bytes")
