"""A hostile component: one function per hostile attempt.

Most attempts first escape the restricted globals (the classic way, sandbox.md
§2.2: a subclass of object whose ``__init__`` lives in the real ``os`` module
hands over that module's globals) and return ``{"pid": <getpid() of the real
os>, "outcome": "blocked: ..." | "allowed: ..."}``, so the test can check the
escape really reached ``os`` in this worker before trusting a refusal.
Attempts that stay inside the language layer or the API return the outcome
only, or raise the error the runtime gave them.
"""

from pydantic import BaseModel

from runtime import Component

component = Component("evil", env={"EVIL_OWN": "evil-own-value"})

_saved: dict = {}


@component.table("loot")
class Loot(BaseModel):
    text: str


# --- escapes ---------------------------------------------------------------------------------


def real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def real_import(name):
    return real_os()["__builtins__"]["__import__"](name)


def _outcome(fn):
    try:
        return f"allowed: {fn()!r}"[:400]
    except BaseException as exc:  # noqa: BLE001
        return f"blocked: {type(exc).__name__}: {exc}"[:400]


def _escaped(fn):
    """Prove the escape (the pid of the real os), then run the attempt."""
    return {"pid": real_os()["getpid"](), "outcome": _outcome(fn)}


def _read(path, n=64):
    o = real_os()
    fd = o["open"](path, o["O_RDONLY"])
    try:
        return o["read"](fd, n)
    finally:
        o["close"](fd)


def _write(path):
    o = real_os()
    fd = o["open"](path, o["O_WRONLY"] | o["O_CREAT"], 0o644)
    o["write"](fd, b"pwned = True\n")
    o["close"](fd)
    return path


def _libc():
    ctypes = real_import("ctypes")
    return ctypes, ctypes.CDLL(None, use_errno=True)


def _syscall(number, *args):
    ctypes, libc = _libc()
    libc.syscall.restype = ctypes.c_long
    r = libc.syscall(int(number), *[ctypes.c_long(a) for a in args])
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, real_os()["strerror"](err))
    return r


def _ppid():
    return real_os()["getppid"]()


# --- files ---------------------------------------------------------------------------------------


@component.action
async def read_lmdb(ctx, arg: str) -> dict:
    return _escaped(lambda: _read(arg))


@component.action
async def read_shadow(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _read("/etc/shadow"))


@component.action
async def read_root_home(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["listdir"]("/root"))


@component.action
async def list_data_dir(ctx, arg: str) -> dict:
    return _escaped(lambda: real_os()["listdir"](arg)[:5])


@component.action
async def write_tmp(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _write("/tmp/bulkhead-evil-write"))


@component.action
async def write_code_in_app_dir(ctx, arg: str) -> dict:
    return _escaped(lambda: _write(arg))


@component.action
async def write_code_in_components(ctx, arg: str) -> dict:
    return _escaped(lambda: _write(arg))


@component.action
async def write_dev_shm(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _write("/dev/shm/bulkhead-evil"))


# --- /proc and other processes ----------------------------------------------------------------------


@component.action
async def read_coordinator_environ(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _read(f"/proc/{_ppid()}/environ"))


@component.action
async def read_coordinator_mem(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _read(f"/proc/{_ppid()}/mem"))


@component.action
async def read_coordinator_fd(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["listdir"](f"/proc/{_ppid()}/fd"))


@component.action
async def read_neighbour_environ(ctx, arg: str) -> dict:
    return _escaped(lambda: _read(f"/proc/{int(arg)}/environ", 4096))


@component.action
async def read_neighbour_cmdline(ctx, arg: str) -> dict:
    return _escaped(lambda: _read(f"/proc/{int(arg)}/cmdline", 4096))


@component.action
async def list_proc(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["listdir"]("/proc")[:10])


@component.action
async def kill_coordinator(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["kill"](_ppid(), 9))


@component.action
async def kill_neighbour(ctx, arg: str) -> dict:
    return _escaped(lambda: real_os()["kill"](int(arg), 9))


@component.action
async def stop_coordinator_group(ctx, arg: str = "") -> dict:
    o = real_os()
    return _escaped(lambda: o["killpg"](o["getpgid"](_ppid()), 19))  # SIGSTOP


@component.action
async def ptrace_attach_neighbour(ctx, arg: str) -> dict:
    return _escaped(lambda: _syscall(101, 16, int(arg), 0, 0))  # ptrace(PTRACE_ATTACH, pid)


@component.action
async def process_vm_readv_neighbour(ctx, arg: str) -> dict:
    return _escaped(lambda: _syscall(310, int(arg), 0, 0, 0, 0, 0))


@component.action
async def ptrace_traceme(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _syscall(101, 0, 0, 0, 0))


@component.action
async def prlimit_coordinator(ctx, arg: str = "") -> dict:
    resource = real_import("resource")
    return _escaped(lambda: resource.prlimit(_ppid(), resource.RLIMIT_NOFILE))


@component.action
async def renice_coordinator(ctx, arg: str = "") -> dict:
    o = real_os()
    pid = _ppid()
    return _escaped(lambda: o["setpriority"](o["PRIO_PROCESS"], pid, o["getpriority"](o["PRIO_PROCESS"], pid)))


# --- privileges and kernel surface ------------------------------------------------------------------------


@component.action
async def setuid_root(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["setuid"](0))


@component.action
async def raise_memory_rlimit(ctx, arg: str = "") -> dict:
    resource = real_import("resource")
    inf = resource.RLIM_INFINITY
    return _escaped(lambda: resource.setrlimit(resource.RLIMIT_AS, (inf, inf)))


@component.action
async def unshare_user_ns(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _syscall(272, 0x10000000))  # unshare(CLONE_NEWUSER)


@component.action
async def mount_tmpfs(ctx, arg: str = "") -> dict:
    ctypes, libc = _libc()

    def go():
        if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
            raise OSError(ctypes.get_errno(), "mount refused")
        return "mounted"

    return _escaped(go)


@component.action
async def io_uring_setup(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _syscall(425, 8, 0))


@component.action
async def open_by_handle(ctx, arg: str = "") -> dict:
    return _escaped(lambda: _syscall(304, -100, 0, 0))  # open_by_handle_at(AT_FDCWD, NULL, 0)


# --- network ---------------------------------------------------------------------------------------------


@component.action
async def tcp_connect_daemon(ctx, arg: str) -> dict:
    socket = real_import("socket")

    def go():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(("127.0.0.1", int(arg)))
        return "connected"

    return _escaped(go)


@component.action
async def udp_send(ctx, arg: str = "9") -> dict:
    socket = real_import("socket")

    def go():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", ("127.0.0.1", int(arg or 9)))
        return "sent"

    return _escaped(go)


@component.action
async def dns_lookup(ctx, arg: str = "") -> dict:
    socket = real_import("socket")
    return _escaped(lambda: socket.getaddrinfo("example.com", 80)[:1])


@component.action
async def netlink_socket(ctx, arg: str = "") -> dict:
    socket = real_import("socket")
    return _escaped(lambda: socket.socket(16, socket.SOCK_RAW, 0).fileno())  # AF_NETLINK


@component.action
async def unix_connect_other_worker_sockets(ctx) -> dict:
    """Connect to the coordinator's ipc sockets of the other workers (next to ours: list them, or guess)."""
    socket = real_import("socket")
    o = real_os()
    mine = ctx._inv.channel.config["endpoint"][len("ipc://"):]
    run_dir = o["path"].dirname(o["path"].dirname(mine)) if mine.endswith("/sock") else o["path"].dirname(mine)

    def go():
        try:  # the names hold a random part: listing the run dir is the only way to learn them
            return {"listed": o["listdir"](run_dir)}
        except PermissionError as exc:
            listing = f"listing the run dir refused ({exc.strerror})"
        connected, errors = [], set()
        for n in range(1, 60):  # the names endpoints had when they were w{serial}.sock, w{serial}/sock
            for path in (f"{run_dir}/w{n}.sock", f"{run_dir}/w{n}/sock"):
                if path == mine:
                    continue
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    connected.append(path)
                except FileNotFoundError:
                    pass  # not a socket of this daemon
                except OSError as exc:
                    errors.add(type(exc).__name__ + ": " + (exc.strerror or ""))
                finally:
                    s.close()
        if connected:
            return connected
        raise PermissionError(f"{listing}; no other worker socket reachable by its guessable name "
                              f"({sorted(errors) or 'none exists'})")

    return _escaped(go)


# --- processes ----------------------------------------------------------------------------------------------


@component.action
async def fork(ctx, arg: str = "") -> dict:
    def go():
        pid = real_os()["fork"]()
        if pid == 0:
            real_os()["_exit"](0)
        return pid

    return _escaped(go)


@component.action
async def fork_bomb(ctx, arg: str = "") -> dict:
    def go():
        n = 0
        while n < 64:
            if real_os()["fork"]() == 0:
                while True:
                    pass
            n += 1
        return n

    return _escaped(go)


@component.action
async def exec_shell(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["execv"]("/bin/sh", ["/bin/sh", "-c", "touch /tmp/bulkhead-evil-exec"]))


@component.action
async def system(ctx, arg: str = "") -> dict:
    def go():
        rc = real_os()["system"]("touch /tmp/bulkhead-evil-system")
        if rc != 0:
            raise OSError(f"system() returned {rc}")
        return rc

    return _escaped(go)


@component.action
async def subprocess_popen(ctx, arg: str = "") -> dict:
    subprocess = real_import("subprocess")
    return _escaped(lambda: subprocess.Popen(["/bin/true"]).wait())


@component.action
async def thread_bomb(ctx, arg: str = "") -> dict:
    threading = real_import("threading")
    stop = threading.Event()
    started = []

    def go():
        try:
            for _ in range(5000):
                t = threading.Thread(target=stop.wait, daemon=True)
                t.start()
                started.append(t)
            return len(started)
        finally:
            stop.set()
            for t in started:
                t.join()

    out = _escaped(go)
    out["threads"] = len(started)
    return out


# --- resources ---------------------------------------------------------------------------------------


@component.action
async def allocate_4gib(ctx, arg: str = "") -> dict:
    return _escaped(lambda: len(bytearray(4096 * 1024 * 1024)))


@component.action
async def memory_grow(ctx, arg: str = "") -> dict:
    blocks = []

    def go():
        try:
            while True:
                blocks.append(bytearray(16 * 1024 * 1024))
        finally:
            got = len(blocks) * 16
            blocks.clear()
            _saved["grown_mib"] = got

    out = _escaped(go)
    out["mib"] = _saved.get("grown_mib", 0)
    return out


@component.action
async def exhaust_descriptors(ctx, arg: str = "") -> dict:
    o = real_os()
    fds = []

    def go():
        try:
            for _ in range(100_000):
                fds.append(o["open"]("/dev/null", o["O_RDONLY"]))
        finally:
            for fd in fds:
                o["close"](fd)

    out = _escaped(go)
    out["opened"] = len(fds)
    return out


@component.query
async def spin_cpu(ctx) -> int:
    n = 0
    while True:
        n += 1


@component.mutation
async def sleep_hang(ctx) -> dict:
    real_import("time").sleep(30)  # the real module: past the language layer's DeterminismError
    return {}


@component.action
async def crash_segfault(ctx) -> dict:
    ctypes = real_import("ctypes")
    ctypes.string_at(0)
    return {}


@component.query
async def huge_return(ctx) -> str:
    return "x" * (17 * 1024 * 1024)


@component.query
async def deep_return(ctx) -> list:
    v: list = []
    for _ in range(200):
        v = [v]
    return v


# --- the language layer ---------------------------------------------------------------------------------


@component.action
async def import_os(ctx) -> str:
    import os  # noqa: F401

    return "imported"


@component.action
async def import_network_module(ctx) -> str:
    import urllib.request  # noqa: F401

    return "imported"


@component.action
async def call_open(ctx) -> str:
    return open("/etc/passwd").read()  # noqa: SIM115


@component.action
async def utf7_source(ctx) -> str:
    from evil import sneaky  # noqa: F401

    return "imported"


@component.action
async def builtin_self_escape(ctx) -> dict:
    real = len.__self__  # a builtin function's __self__ is the real builtins module
    os = real.__import__("os")
    return {"pid": os.getpid(), "outcome": _outcome(lambda: os.fork())}


@component.action
async def frame_walk_escape(ctx) -> dict:
    try:
        raise ValueError("walk")
    except ValueError as exc:
        frame = exc.__traceback__.tb_frame
    sys = None
    while frame is not None and sys is None:
        sys = frame.f_globals.get("sys")
        frame = frame.f_back
    os = sys.modules["os"]
    return {"pid": os.getpid(), "outcome": _outcome(lambda: _read(f"/proc/{os.getppid()}/environ"))}


@component.action
async def generator_frame_escape(ctx) -> dict:
    def gen():
        yield 1

    g = gen()
    frame = g.gi_frame
    while frame.f_back is None and frame is not None:
        break
    sys = None
    f = frame
    while f is not None and sys is None:
        sys = f.f_globals.get("sys")
        f = f.f_back
    if sys is None:  # a suspended generator has no f_back: walk from the running frame instead
        next(g)
        try:
            raise KeyError
        except KeyError as exc:
            f = exc.__traceback__.tb_frame
        while f is not None and sys is None:
            sys = f.f_globals.get("sys")
            f = f.f_back
    os = sys.modules["os"]
    return {"pid": os.getpid(), "outcome": _outcome(lambda: _read(f"/proc/{os.getppid()}/mem"))}


@component.action
async def format_string_walk(ctx) -> str:
    """No dots in the source: walk to the worker's own config through str.format."""
    return "{0._inv.channel.config} {0._inv.definition.env}".format(ctx)


@component.action
async def poison_shared_modules(ctx) -> dict:
    import json

    json.dumps = lambda *a, **k: "poisoned"
    real = len.__self__
    real.len = lambda x: 42
    real_import("runtime.values").pack = lambda *a, **k: b"poisoned"
    return {"pid": real_os()["getpid"](), "outcome": "allowed: poisoned json, builtins.len, runtime.values.pack"}


# --- the API: other mounts' data --------------------------------------------------------------------------


@component.query
async def get_neighbour_doc(ctx, arg: str) -> dict | None:
    return await ctx.db.get(arg)


@component.mutation
async def replace_neighbour_doc(ctx, arg: str) -> str:
    await ctx._inv.syscall("replace", {"id": arg, "doc": {"text": "overwritten"}})
    return "replaced"


@component.mutation
async def delete_neighbour_doc(ctx, arg: str) -> str:
    await ctx._inv.syscall("delete", {"id": arg})
    return "deleted"


@component.query
async def scan_neighbour_table(ctx) -> list:
    res = await ctx._inv.syscall("scan", {"table": "facts", "index": "by_creation_time", "range": [],
                                          "order": "asc", "limit": 0, "after": None})
    return res["docs"]


@component.query
async def mount_in_payload(ctx, arg: str) -> dict:
    res = await ctx._inv.syscall("get", {"id": arg, "mount": "good", "path": "good"})
    return res


@component.query
async def forged_cursor(ctx, arg: str) -> dict:
    return await ctx.db.query("loot").paginate(arg, 10)


@component.query
async def forged_handle(ctx) -> list:
    return await ctx.run_query("function://WyJnb29kIiwiYWxsIl0.00000000000000000000000000000000")


@component.query
async def call_neighbour_by_path(ctx) -> list:
    return await ctx._inv.syscall("run", {"ref": {"path": "good", "name": "all"}, "kind": "query", "args": {}})


@component.query
async def handle_for_neighbour_function(ctx) -> str:
    return await ctx._inv.syscall("handle", {"ref": {"path": "good", "name": "all"}})


@component.query
async def read_neighbour_env(ctx) -> dict:
    return dict(ctx.env)


# --- the wire ----------------------------------------------------------------------------------------------


def _zmq_socket(ctx):
    """The worker's own socket to the coordinator, as a blocking zmq socket."""
    zmq = real_import("zmq")
    return zmq, zmq.Socket.shadow(ctx._inv.channel.sock.underlying)


def _frame(**fields):
    msgpack = real_import("msgpack")
    return msgpack.packb({"version": 1, **fields})


@component.action
async def forged_token(ctx) -> dict:
    w = ctx._inv.channel
    return {"pid": real_os()["getpid"](), "outcome": "allowed: " + repr(await w.syscall("f0rged-t0ken", "get", {"id": "x"}))}


@component.query
async def remember_token(ctx) -> str:
    _saved["token"] = ctx._inv.token
    return "saved"


@component.query
async def revoked_token(ctx) -> dict:
    w = ctx._inv.channel
    return await w.syscall(_saved["token"], "scan", {"table": "loot", "index": "by_creation_time", "range": [],
                                                     "order": "asc", "limit": 0, "after": None})


@component.action
async def garbage_frames(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    for _ in range(5):
        s.send(b"\xc1\xff garbage \x00")
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def ext_type_frames(ctx) -> dict:
    msgpack = real_import("msgpack")
    zmq, s = _zmq_socket(ctx)
    for _ in range(5):
        s.send(msgpack.packb({"type": "syscall", "token": msgpack.ExtType(1, b"pickle!")}))
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def deeply_nested_frames(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    for _ in range(5):
        s.send(b"\x91" * 5000 + b"\xc0")  # 5000 nested one-element arrays
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def unsolicited_results(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    for rid in range(900_000, 900_005):
        s.send(_frame(type="result", request_id=rid, ok=True, value="forged"))
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def forged_hello(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    for _ in range(5):
        s.send(_frame(type="hello", request_id=0, manifest={"functions": {}, "tables": {}}, layers={"seccomp": "on"}))
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def flood_forged_syscalls(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    sent = 0
    for i in range(50_000):
        try:
            s.send(_frame(type="syscall", request_id=10_000 + i, token="flood", op="get", args={"id": "x"}),
                   zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            real_import("time").sleep(0.001)
    real_import("time").sleep(5)
    return {"pid": real_os()["getpid"](), "outcome": f"allowed: sent {sent}"}


@component.action
async def flood_unread_replies(ctx) -> dict:
    """Valid syscalls with the live token, as fast as possible, never reading a reply."""
    zmq, s = _zmq_socket(ctx)
    token = ctx._inv.token
    frame = _frame(type="syscall", request_id=1 << 40, token=token, op="handle", args={"ref": {"path": "", "name": "x"}})
    t = real_import("time")
    end = t.monotonic() + 20
    sent = 0
    while t.monotonic() < end:
        try:
            s.send(frame, zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            t.sleep(0.0005)
    return {"pid": real_os()["getpid"](), "outcome": f"allowed: sent {sent}"}


@component.action
async def oversized_frame(ctx) -> dict:
    zmq, s = _zmq_socket(ctx)
    s.send(b"\x00" * (40 * 1024 * 1024))
    real_import("time").sleep(3)
    return {"pid": real_os()["getpid"](), "outcome": "allowed: still alive"}


@component.action
async def probe(ctx) -> dict:
    return {"pid": real_os()["getpid"](), "outcome": "allowed: escaped",
            "uid": real_os()["getuid"](), "endpoint": ctx._inv.channel.config["endpoint"]}


@component.mutation
async def die(ctx) -> None:
    real_os()["_exit"](3)


# --- a shared uid: modes, owners, times, xattrs, priorities (refused by seccomp, not by the uid) ------------


@component.action
async def chmod_path(ctx, arg: str) -> dict:
    return _escaped(lambda: real_os()["chmod"](arg, 0o666))


@component.action
async def chown_path(ctx, arg: str) -> dict:
    o = real_os()
    return _escaped(lambda: o["chown"](arg, o["getuid"](), o["getgid"]()))


@component.action
async def utime_path(ctx, arg: str) -> dict:
    return _escaped(lambda: real_os()["utime"](arg, (0, 0)))


@component.action
async def setxattr_path(ctx, arg: str) -> dict:
    return _escaped(lambda: real_os()["setxattr"](arg, "user.evil", b"1"))


@component.action
async def renice_own_uid(ctx, arg: str = "") -> dict:
    o = real_os()
    return _escaped(lambda: o["setpriority"](o["PRIO_USER"], 0, 19))  # every process of the uid


@component.action
async def sched_setaffinity_coordinator(ctx, arg: str = "") -> dict:
    return _escaped(lambda: real_os()["sched_setaffinity"](_ppid(), {0}))


@component.action
async def starve_coordinator(ctx, arg: str = "") -> dict:
    o = real_os()
    return _escaped(lambda: o["sched_setscheduler"](_ppid(), o["SCHED_IDLE"], o["sched_param"](0)))
