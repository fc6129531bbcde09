"""Amplifying values (issue 13, item 3): bounded decoding work per frame, value limits on results and
nested-call arguments, each refusal naming the limit, beside a steady neighbour.

``bomber`` escapes the language layer (it holds the real ``sys``, ``msgpack`` and ``zmq``; its pid comes from
the real ``os``).  It sends syscall frames of one byte per empty list (a million containers in a MiB: ~50x
growth when decoded), and returns values its own worker check would refuse, after switching that check off.
The coordinator counts a frame's lists and maps in its bytes before decoding it
(:func:`runtime.protocol.codec.count_containers`) and checks every result and nested-call argument against
``array_elements_count``, ``document_fields_count`` and ``document_depth`` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import LimitExceeded, WorkerCrashed
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "amp_app"
ENV = {"BULKHEAD_QUARANTINE_AFTER": "1000", "BULKHEAD_RESTART_BACKOFF_MAX_S": "0.3"}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    d = module_daemon_for(APP, env=ENV)
    with d.client(admin=True) as c:
        c.call("steady:put", {"text": "before"})
    return d


def _steady_is_untouched(d: RunningDaemon, pid: int) -> None:
    with d.client(admin=True) as c:
        assert c.call("steady:texts", {}) == ["before"]
        assert c.call("steady:count", {"items": [1, 2, 3]}) == 3
    assert d.worker_pid("steady") == pid


def test_a_container_bomb_is_refused_before_it_is_decoded(daemon: RunningDaemon) -> None:
    steady = daemon.worker_pid("steady")
    with daemon.client(admin=True) as c:
        assert c.call("bomber:pid", {}) == daemon.worker_pid("bomber")  # the escape holds the real os
        with pytest.raises(WorkerCrashed) as err:
            c.call("bomber:container_bombs", {"frames": 5, "containers": 1_000_000})
    assert "malformed frames" in err.value.message
    assert "frame_containers_count=100000" in err.value.message
    _steady_is_untouched(daemon, steady)


def test_a_frame_within_the_container_limit_is_served(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c:
        assert c.call("steady:count", {"items": [[]] * 8000}) == 8000


@pytest.mark.parametrize(("n", "refused"), [(8192, False), (8193, True), (100_000, True)])
def test_a_result_over_the_element_limit_is_refused_by_the_coordinator(daemon: RunningDaemon, n: int,
                                                                       refused: bool) -> None:
    steady = daemon.worker_pid("steady")
    with daemon.client(admin=True) as c:
        if not refused:
            assert len(c.call("bomber:long_result", {"n": n})) == n
            return
        with pytest.raises(LimitExceeded) as err:
            c.call("bomber:long_result", {"n": n})
    assert err.value.fields["limit"] == "array_elements_count"
    assert "return value of 'long_result'" in err.value.message
    _steady_is_untouched(daemon, steady)


def test_a_result_too_deep_is_refused_by_the_coordinator(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c, pytest.raises(LimitExceeded) as err:
        c.call("bomber:deep_result", {"depth": 17})
    assert err.value.fields["limit"] == "document_depth"


@pytest.mark.parametrize(("fn", "args", "limit"), [("relay", {"n": 9000}, "array_elements_count"),
                                                    ("relay_deep", {"depth": 17}, "document_depth")])
def test_nested_call_arguments_are_held_to_the_value_limits(daemon: RunningDaemon, fn: str, args: dict,
                                                            limit: str) -> None:
    with daemon.client() as c:
        with pytest.raises(LimitExceeded) as err:
            c.query(fn, **args)
        assert err.value.fields["limit"] == limit
        assert "arguments of 'count'" in err.value.message
        assert c.query("relay", n=8192) == 8192


def test_nested_call_arguments_past_the_workers_check_are_refused_by_the_coordinator(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c:
        assert c.call("bomber:nested_raw", {"n": 8192}) == 8192
        with pytest.raises(LimitExceeded) as err:
            c.call("bomber:nested_raw", {"n": 8193})
    assert err.value.fields["limit"] == "array_elements_count"
    assert "arguments of 'count'" in err.value.message
