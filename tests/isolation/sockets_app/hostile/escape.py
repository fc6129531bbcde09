"""The escape and the socket attempts the hostile mounts share (plain functions, no component).

An attempt returns ``{"pid": ..., "proof": ..., "outcome": "blocked: ..." | "allowed: ..."}``: ``pid`` comes
from the real ``os`` (or from ``syscall(SYS_getpid)`` for the ctypes attempts) and ``proof`` from a call the
language layer would refuse (the real ``socket.gethostname``, the real ``ctypes``), so a refusal cannot pass
because the escape silently failed.  ``how`` is ``socket`` (the real module), ``ctypes`` (``syscall(SYS_socket)``
and ``syscall(SYS_connect)``, bypassing the module) or ``ctypes_high_bits`` (the family with bit 32 set, which
the kernel truncates away: a filter comparing the family as a 64-bit value must not be fooled by it).
"""

SYS_GETPID, SYS_SOCKET, SYS_CONNECT, SYS_SENDTO, SYS_SOCKETPAIR, SYS_CLOSE = 39, 41, 42, 44, 53, 3
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3


def real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def real_import(name):
    return real_os()["__builtins__"]["__import__"](name)


def _libc():
    ctypes = real_import("ctypes")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def _syscall(number, *args):
    ctypes, libc = _libc()
    conv = [a if isinstance(a, (bytes, ctypes.Array)) else ctypes.c_long(a) for a in args]
    r = libc.syscall(ctypes.c_long(number), *conv)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, real_os()["strerror"](err))
    return r


def _sockaddr(family, address):
    """The raw sockaddr for ``address``: a path (``\\0...`` abstract) for AF_UNIX, (host, port) for AF_INET."""
    struct = real_import("struct")
    if family == AF_UNIX:
        path = address.encode() if isinstance(address, str) else address
        return struct.pack("=H", AF_UNIX) + path + (b"" if path[:1] == b"\0" else b"\0")
    host, port = address
    return struct.pack("=H", AF_INET) + struct.pack(">H", port) + bytes(map(int, host.split("."))) + b"\0" * 8


def _unix_address(arg):
    return "\0" + arg[1:] if arg.startswith("@") else arg


def open_and_reach(family, kind, address, how):
    """Make a socket ``how`` and connect it (stream) or send one datagram to ``address``; "reached ..." if it did."""
    if how == "socket":
        socket = real_import("socket")
        s = socket.socket(family, kind)
        try:
            if kind == SOCK_STREAM:
                s.connect(address)
            else:
                s.sendto(b"hello", address)
        finally:
            s.close()
        return f"reached {address!r}"
    fam = family | (1 << 32) if how == "ctypes_high_bits" else family
    fd = _syscall(SYS_SOCKET, fam, kind, 0)
    try:
        raw = _sockaddr(family, address)
        if kind == SOCK_STREAM:
            _syscall(SYS_CONNECT, fd, raw, len(raw))
        else:
            _syscall(SYS_SENDTO, fd, b"hello", 5, 0, raw, len(raw))
    finally:
        _syscall(SYS_CLOSE, fd)
    return f"reached {address!r} (fd {fd})"


def outcome(fn):
    try:
        return f"allowed: {fn()!r}"[:400]
    except BaseException as exc:
        return f"blocked: {type(exc).__name__}: {exc}"[:400]


def attempt(how, fn):
    """Prove the escape (the real os, socket or ctypes), then run the attempt."""
    if how == "socket":
        proof = real_import("socket").gethostname()  # the language layer refuses socket here: this is the real one
        pid = real_os()["getpid"]()
    else:
        proof = "ctypes"
        pid = _syscall(SYS_GETPID)
    return {"pid": pid, "proof": proof, "outcome": outcome(fn)}


def unix(arg, how):
    return attempt(how, lambda: open_and_reach(AF_UNIX, SOCK_STREAM, _unix_address(arg), how))


def unix_dgram(arg, how):
    return attempt(how, lambda: open_and_reach(AF_UNIX, SOCK_DGRAM, _unix_address(arg), how))


def tcp(port, how):
    return attempt(how, lambda: open_and_reach(AF_INET, SOCK_STREAM, ("127.0.0.1", port), how))


def udp(port, how):
    return attempt(how, lambda: open_and_reach(AF_INET, SOCK_DGRAM, ("127.0.0.1", port), how))


def socketpair(how):
    def go():
        if how == "socket":
            a, b = real_import("socket").socketpair()
            a.close()
            b.close()
            return "a pair"
        ctypes, _ = _libc()
        fds = (ctypes.c_int * 2)()
        _syscall(SYS_SOCKETPAIR, AF_UNIX | (1 << 32 if how == "ctypes_high_bits" else 0), SOCK_STREAM, 0, fds)
        _syscall(SYS_CLOSE, fds[0])
        _syscall(SYS_CLOSE, fds[1])
        return f"a pair {fds[0]},{fds[1]}"
    return attempt(how, go)


def reuse_descriptors(arg):
    """``connect()`` every descriptor the worker already holds (its ZeroMQ socket, the loop's self-pipe) to ``arg``."""
    def go():
        raw = _sockaddr(AF_UNIX, _unix_address(arg))
        reached, errors = [], set()
        for fd in range(3, 256):
            try:
                _syscall(SYS_CONNECT, fd, raw, len(raw))
                reached.append(fd)
            except OSError as exc:
                errors.add(exc.strerror)
        if reached:
            return f"reached {arg!r} with fds {reached}"
        raise PermissionError(f"every connect failed: {sorted(errors)}")
    return attempt("ctypes", go)


def own_endpoint(endpoint, how):
    """The worker's own ipc endpoint (unlinked once its Hello was taken): a second connection to it."""
    return unix(endpoint[len("ipc://"):], how)


def netlink(how):
    """A netlink socket (route): the host's network configuration; refused even with network declared."""
    def go():
        if how == "socket":
            socket = real_import("socket")
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
            return "a netlink socket"
        fd = _syscall(SYS_SOCKET, AF_NETLINK | (1 << 32 if how == "ctypes_high_bits" else 0), SOCK_RAW, 0)
        _syscall(SYS_CLOSE, fd)
        return f"a netlink socket (fd {fd})"
    return attempt(how, go)


def stat_paths(paths):
    """What the worker sees at each path (``stat`` needs no Landlock right, only a visible path)."""
    def go():
        o = real_os()
        seen = {}
        for p in paths:
            try:
                seen[p] = f"visible (mode {o['stat'](p).st_mode:o})"
            except OSError as exc:
                seen[p] = f"{type(exc).__name__}: {exc.strerror}"
        if any(v.startswith("visible") for v in seen.values()):
            return seen
        raise FileNotFoundError(seen)
    return attempt("socket", go)


def _low_page():
    """An executable page below 4 GiB (the i386 ABI takes 32-bit pointers)."""
    ctypes, libc = _libc()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return libc.mmap(None, 4096, 7, 0x22 | 0x40, -1, 0)  # rwx, private anonymous, MAP_32BIT


def _run(page, code):
    """Run ``code`` (x86_64, ending in ``ret``, result in eax) at the start of ``page``."""
    ctypes, _ = _libc()
    ctypes.memmove(page, code, len(code))
    return ctypes.CFUNCTYPE(ctypes.c_int)(page)()


def _le(v):
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def machine_code_getpid():
    """The proof for :func:`i386_socket`: this worker runs machine code of its own (getpid by ``syscall``)."""
    return {"pid": _run(_low_page(), b"\xb8" + _le(SYS_GETPID) + b"\x0f\x05\xc3"), "proof": "machine code"}


def i386_socket(arg):
    """``socket(AF_UNIX)`` and ``connect`` to ``arg`` through the i386 ABI (``int 0x80``, numbers 359 and 362),
    which a filter written for x86_64 numbers does not name."""
    ctypes, _ = _libc()
    page = _low_page()
    raw = _sockaddr(AF_UNIX, _unix_address(arg))
    ctypes.memmove(page + 2048, raw, len(raw))

    def int80(number, a, b, c):  # push rbx; mov eax/ebx/ecx/edx; int 0x80; pop rbx; ret
        return _run(page, b"\x53\xb8" + _le(number) + b"\xbb" + _le(a) + b"\xb9" + _le(b) + b"\xba" + _le(c)
                    + b"\xcd\x80\x5b\xc3")

    fd = int80(359, AF_UNIX, SOCK_STREAM, 0)
    if fd < 0:
        return {"outcome": f"blocked: socket errno {-fd}"}
    rc = int80(362, fd, page + 2048, len(raw))
    return {"outcome": f"allowed: fd {fd}, connect {rc}" if rc == 0 else f"blocked: connect errno {-rc} (fd {fd})"}
