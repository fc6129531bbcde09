"""A hostile component: it escapes the restricted globals, then tries to do harm.

Each attack returns what happened as a string: "blocked: <error>" when the OS
refused, "allowed: <detail>" when it went through.  The escape itself is the
classic one (sandbox.md §2.2): a subclass of object whose __init__ lives in
the real ``os`` module hands over that module's globals.
"""

from runtime import Component

component = Component("evil")


def real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def real_import(name):
    return real_os()["__builtins__"]["__import__"](name)


def _try(fn):
    try:
        return f"allowed: {fn()!r}"[:300]
    except BaseException as exc:  # noqa: BLE001
        return f"blocked: {type(exc).__name__}: {exc}"[:300]


def _read(path):
    fd = real_os()["open"](path, real_os()["O_RDONLY"])
    try:
        return real_os()["read"](fd, 64)
    finally:
        real_os()["close"](fd)


def _write(path):
    o = real_os()
    fd = o["open"](path, o["O_WRONLY"] | o["O_CREAT"], 0o644)
    o["write"](fd, b"pwned")
    o["close"](fd)
    return path


def _connect(port):
    socket = real_import("socket")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", int(port)))
    return "connected"


def _udp(port):
    socket = real_import("socket")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", int(port)))
    return "sent"


def _fork():
    pid = real_os()["fork"]()
    if pid == 0:
        real_os()["_exit"](0)
    return pid


def _exec():
    real_os()["execv"]("/bin/true", ["/bin/true"])


def _system():
    rc = real_os()["system"]("touch /tmp/bulkhead-evil-system")
    if rc != 0:
        raise OSError(f"system() returned {rc}")
    return rc


def _ctypes_syscall(number):
    ctypes = real_import("ctypes")
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(int(number), 0, 0, 0)
    if r < 0:
        raise OSError(ctypes.get_errno(), "syscall refused")
    return r


def _alloc(mib):
    block = bytearray(int(mib) * 1024 * 1024)
    return len(block)


def _listdir(path):
    return real_os()["listdir"](path)[:5]


ATTACKS = {
    "probe": lambda arg: real_os()["getpid"](),
    "read_lmdb": _read,
    "read_shadow": lambda arg: _read("/etc/shadow"),
    "read_coordinator_environ": lambda arg: _read(f"/proc/{real_os()['getppid']()}/environ"),
    "read_proc_mem_of_parent": lambda arg: _read(f"/proc/{real_os()['getppid']()}/mem"),
    "list_data_dir": _listdir,
    "write_tmp": lambda arg: _write("/tmp/bulkhead-evil-write"),
    "write_app_dir": lambda arg: _write(arg),
    "tcp_connect_daemon": _connect,
    "udp_send": _udp,
    "fork": lambda arg: _fork(),
    "exec": lambda arg: _exec(),
    "system": lambda arg: _system(),
    "kill_coordinator": lambda arg: real_os()["kill"](real_os()["getppid"](), 9),
    "kill_neighbour": lambda arg: real_os()["kill"](int(arg), 9),
    "unshare_via_ctypes": lambda arg: _ctypes_syscall(272),  # unshare(0)
    "ptrace_via_ctypes": lambda arg: _ctypes_syscall(101),  # ptrace(PTRACE_TRACEME)
    "allocate_4gib": lambda arg: _alloc(4096),
    "setuid_root_again": lambda arg: real_os()["setuid"](0),
}


@component.action
async def attack(ctx, name: str, arg: str = "") -> str:
    return _try(lambda: ATTACKS[name](arg))


@component.mutation
async def die(ctx) -> None:
    real_os()["_exit"](3)
