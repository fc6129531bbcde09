"""Every limit and tunable of Bulkhead, in one place.

Each entry names its unit in its name (``_bytes``, ``_s``, ``_count``) and can
be overridden by an environment variable ``BULKHEAD_<NAME upper-case>`` read
when the :class:`Limits` object is built (the coordinator builds one at start;
tests pass their own).  The defaults are Convex's (see DESIGN.md, guarantee 10).

Nothing else in the project hard-codes one of these numbers: error messages
name the limit by its field name here, so users can find and override it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The contract limits (guarantee 10) and the runtime's tunables."""

    # --- values and documents -------------------------------------------------
    document_size_bytes: int = 1 * MIB
    """Largest encoded document (and largest single value stored in a table)."""
    document_fields_count: int = 1024
    """Most entries in one dict, at any depth of a value."""
    document_depth: int = 16
    """Deepest nesting of lists and dicts inside one value."""
    array_elements_count: int = 8192
    """Most elements in one list."""
    field_name_length: int = 1024
    """Longest dict key, in characters."""
    frame_containers_count: int = 100_000
    """Most lists and maps one frame from a client or a worker may hold, counted in its bytes before it is decoded
    (decoding a container costs ~50x what its one byte does: this keeps any frame's decode to a few ms)."""

    # --- functions ------------------------------------------------------------
    arguments_size_bytes: int = 16 * MIB
    """Largest encoded argument object of one call."""
    return_size_bytes: int = 16 * MIB
    """Largest encoded return value of one call."""
    query_mutation_timeout_s: float = 1.0
    """CPU time a query or mutation may use: its worker process's CPU (all threads) while the call runs,
    read from ``/proc``; waiting for syscall replies, for nested calls or for a CPU does not count."""
    query_mutation_wall_timeout_s: float = 15.0
    """Backstop for a query or mutation that blocks without using CPU (it cannot sleep in the sandbox):
    wall time minus nested calls (Convex's system timeout is 15 s too)."""
    action_timeout_s: float = 600.0
    """Wall time of an action, minus the time it waits for nested calls (its sleeps count)."""
    call_depth: int = 8
    """Deepest chain of nested query/mutation calls."""
    log_lines_count: int = 256
    """Log lines kept per call; further lines are dropped (and counted)."""
    log_line_bytes: int = 4096
    """Longest log line kept; longer lines are truncated."""

    # --- workers (the OS layer of sandbox/hardening.py) ---------------------
    worker_memory_bytes: int = 1024 * MIB
    """RLIMIT_AS of a worker: past it allocations fail with MemoryError."""
    worker_open_files: int = 256
    """RLIMIT_NOFILE of a worker."""
    worker_file_size_bytes: int = 1 * MIB
    """RLIMIT_FSIZE of a worker (it writes no files; Landlock refuses writes anyway)."""
    sandbox_hardening: int = 1
    """1: apply the OS layer to every worker (degrading loudly where the machine lacks a layer); 0: none."""
    worker_zygote: int = 1
    """1: fork workers from a clean preloaded zygote (sandbox/zygote.py), falling back to a fresh interpreter
    when it cannot be used; 0: a fresh interpreter per worker always."""

    # --- worker supervision (sandbox/supervisor.py) ------------------------
    worker_max_strikes: int = 3
    """Strikes (malformed or unsolicited frames, unknown tokens, floods, unread replies) before a worker is killed."""
    worker_frames_per_s: float = 20_000.0
    """Sustained frames per second one worker may send (a burst of as many is allowed); beyond: a strike per frame."""
    worker_max_outstanding: int = 1_000
    """Syscalls of one worker waiting for their reply; beyond: a strike per syscall, which is dropped."""
    restart_backoff_max_s: float = 5.0
    """Longest wait before restarting a mount whose workers keep dying (doubles from 0.25 s per recent death)."""
    quarantine_after: int = 3
    """Kills for misbehaviour (or 3x as many deaths of any kind) within ``quarantine_window_s``
    that quarantine a mount."""
    quarantine_window_s: float = 120.0
    """The window ``quarantine_after`` counts deaths in."""
    quarantine_s: float = 30.0
    """How long a quarantined mount fails its calls (its restarted worker stays idle meanwhile)."""
    worker_hello_timeout_s: float = 60.0
    """How long a new worker may take to import its code and send its manifest."""
    worker_wait_s: float = 30.0
    """How long a call waits for its mount's worker to (re)start before it fails."""
    worker_drain_s: float = 30.0
    """How long an old deployment's workers may finish their calls after a deploy switched."""
    system_call_timeout_s: float = 60.0
    """How long the coordinator's own calls to a worker (schema validation at deploy) may take."""
    worker_cache_docs: int = 10_000
    """Answers to reads (gets and index scans of its mount's tables) a worker keeps to answer them again
    without asking the coordinator (0: no cache)."""
    worker_cache_bytes: int = 8 * MIB
    """Encoded bytes of those answers, at most."""
    worker_cache_feed_keys: int = 4096
    """Written index keys the coordinator keeps for one worker between two of its invokes; past it the
    worker is told to drop its whole cache instead."""

    # --- deployments ---------------------------------------------------------
    mount_depth: int = 8
    """Deepest nesting of components using components (a deeper one is refused as a likely cycle)."""
    mounts_count: int = 256
    """Most mounts one deployment may have."""
    schema_check_batch_count: int = 500
    """Stored documents sent to a new worker per schema-validation call at deploy."""
    log_entries_kept: int = 20_000
    """Log lines the coordinator keeps in memory for ``bulkhead logs`` (the oldest go first)."""

    # --- transactions (one budget shared by every nested call) ---------------
    txn_read_bytes: int = 16 * MIB
    """Bytes of documents read by one transaction."""
    txn_write_bytes: int = 16 * MIB
    """Bytes of documents written by one transaction."""
    txn_scanned_documents: int = 32_000
    """Documents scanned by one transaction (filtered-out ones count)."""
    txn_index_ranges: int = 4_096
    """Index ranges read (one per get and per query) by one transaction."""
    txn_written_documents: int = 16_000
    """Documents written by one transaction."""
    txn_scheduled_functions: int = 1_000
    """Functions scheduled by one mutation."""
    page_size_items: int = 32_000
    """Largest ``num_items`` of one paginate call."""

    # --- subscriptions and the query cache -------------------------------------
    subscriptions_per_client: int = 1_000
    """Queries one client may keep subscribed."""
    subscription_idle_s: float = 60.0
    """A subscribing client not heard from for this long (clients ping every 10 s) is dropped."""
    query_cache_entries: int = 10_000
    """Client query results kept for reuse (0 turns the cache off)."""
    query_cache_ttl_s: float = 17.0
    """Longest a cached result is served (its frozen ``now`` ages), even when nothing it read changed."""

    # --- file storage ------------------------------------------------------------
    upload_url_ttl_s: float = 3600.0
    """How long an upload URL from ``ctx.storage.generate_upload_url`` stays valid."""
    upload_max_bytes: int = 1024 * MIB
    """Largest file one upload may store."""
    upload_timeout_s: float = 120.0
    """Longest one upload may take."""

    # --- scheduler and crons ---------------------------------------------------
    scheduler_parallelism: int = 16
    """Scheduled jobs (and cron runs) executing at once."""
    scheduler_retention_s: float = 7 * 24 * 3600.0
    """How long completed, failed and canceled jobs stay in ``_scheduled`` before they are removed."""
    scheduler_max_delay_s: float = 5 * 365 * 24 * 3600.0
    """Farthest a job may be scheduled into the future (or the past) of now."""
    scheduler_crash_retries: int = 3
    """Re-runs of a scheduled mutation whose worker crashed (a system error) before it is marked failed."""
    cancel_batch_count: int = 1_000
    """Most jobs one cancel may cancel (with those scheduled by a canceled in-progress action)."""
    controllable_clock: int = 0
    """1: the admin op ``clock`` may move the coordinator's clock (tests of time; never in production)."""
    clock_offset_s: float = 0.0
    """Initial offset of a controllable clock (a test's way to start a daemon "later"); ignored otherwise."""

    # --- commit pipeline ------------------------------------------------------
    occ_retry_deadline_s: float = 60.0
    """How long a mutation that conflicted keeps re-running in the retry lane (first come, first served)
    before the caller sees the ConflictError; there is no retry count."""
    commit_batch_max_txns: int = 512
    """Most transactions grouped into one LMDB write transaction and fsync."""
    write_log_window_s: float = 60.0
    """How long committed write sets stay in memory for OCC validation; a
    transaction whose snapshot is older is refused as "snapshot too old"."""
    write_log_max_entries: int = 200_000
    """Soft cap on commits kept in the in-memory write log."""
    log_retention_s: float = 24 * 3600.0
    """How long the durable transaction log keeps committed write sets."""
    lmdb_map_size_bytes: int = 64 * 1024 * MIB
    """Virtual size reserved for the LMDB map (sparse; grows on disk as used)."""
    lmdb_max_readers: int = 1024
    """Concurrent LMDB read transactions (one per open Bulkhead transaction)."""

    extra: dict[str, str] = field(default_factory=dict, compare=False)
    """Unrecognised ``BULKHEAD_*`` variables seen when loading (for diagnostics)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Limits:
        """Build limits from defaults, ``BULKHEAD_<NAME>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get("BULKHEAD_" + f.name.upper())
            if raw is not None:
                kind = type(getattr(cls, f.name))
                try:
                    values[f.name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"BULKHEAD_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


# --- fixed limits and internal knobs (not overridable; named here so there is one place to look) ---

SUBSCRIPTION_ROUNDS_MAX = 5
"""Re-validation passes per client before a transition waits for the next commit (writes kept racing it)."""
SUBSCRIPTION_PUSH_RETRY_S = 0.05
"""Wait before pushing again to a client whose queue was full."""
SCHEDULER_SCAN_BATCH = 1000
"""Jobs read (recovery) or removed (clean-up) per transaction."""
SCHEDULER_GC_EVERY_S = 60.0
"""How often completed jobs past scheduler_retention_s are looked for."""
UPLOAD_CHUNK_BYTES = 1 << 20
"""Bytes read from an upload per step."""
INDEXES_PER_TABLE_MAX = 32
"""Indexes one table may declare."""
FIELDS_PER_INDEX_MAX = 15
"""Fields one index may list (_creation_time is appended and makes 16)."""
WORKER_SCAN_BATCH = 256
"""Documents a worker fetches per syscall when a filter or iteration needs more than one page."""
SOURCE_FILES_MAX = 20_000
"""Source files one worker's code may import (its import closure, read at start)."""
SOURCE_BYTES_MAX = 256 * 1024 * 1024
"""Bytes of source one worker's code may import."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
"""What an environment variable's name may be (as in a shell, at most 128 characters)."""
ENV_VALUE_BYTES_MAX = 64 * 1024
"""The largest value one deployment environment variable may hold (UTF-8 bytes)."""
ENV_VARS_PER_MOUNT_MAX = 256
"""How many deployment environment variables one mount may have set."""
WORKER_THREADS_MAX = 64
"""RLIMIT_NPROC of a worker with a uid of its own (threads count; zmq and asyncio need a few)."""
WIRE_BUFFERED_BYTES_MAX = 1 << 20
"""Buffered writes are flushed past this many bytes, so a frame never grows past the frame limit."""
FRAME_OVERHEAD_BYTES = 64 * 1024
"""Room for the envelope around the largest allowed argument object."""
ZERO_COPY_BYTES = 64 * 1024
"""Frames at least this big are sent without copying (below it copying is far cheaper: a zero-copy
send hands the buffer to pyzmq's gc thread, ~145 us per small send)."""

CPU_READING_REUSE_S = 0.005
"""A worker's CPU reading this recent is reused where reusing it can only overcharge (an invocation's start)."""
TIME_LIMIT_CHECKS = 4
"""An invocation's clocks are read at least this many times per time limit (CPU can outrun the wall clock)."""
TIME_LIMIT_CHECK_MIN_S = 0.02
"""Shortest wait between two reads of an invocation's clocks."""

ENDED_TOKENS_KEPT = 1024
"""Recently ended capability tokens remembered per worker: late syscalls with one are refused, not struck."""

WIRE_BUFFERED_WRITES_MAX = 64
"""Writes one frame may carry (a worker buffers at most this many before it flushes)."""
WIRE_CACHED_READS_MAX = 4096
"""Reads a worker served from its cache and reports with one frame (it flushes before it would hold more)."""
WIRE_LOG_LINES_MAX = 4096
"""Log lines one result frame may carry (the worker keeps ``log_lines_count`` of them)."""
WIRE_LOG_BATCH_MAX = 256
"""Log lines one stray-output frame may carry."""
WIRE_NAME_MAX = 256
"""Longest function name or auth key in a frame."""

DEFAULT = Limits()
"""The defaults, for code that is not handed a :class:`Limits`."""
