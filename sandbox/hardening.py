"""The OS layer of a worker, applied before any user code runs.

Order (``../shared/reference/sandbox.md`` §5), each step reported in the
worker's ``hello`` so ``bulkhead daemon status`` can say which layers hold:

1. *early*, while the process is still single-threaded (namespaces and
   Landlock apply to the calling thread and its future threads only):
   rlimits, ``unshare`` of net/ipc/uts (a user namespace first when not root),
   ``PR_SET_NO_NEW_PRIVS``, not dumpable, Landlock (read-only access to the
   interpreter, the packages and the mount's own ``.py`` files; no TCP unless
   the mount declared network; no signals or abstract sockets outside);
2. *late*, after the ZeroMQ context made its threads: a seccomp filter
   synchronised to every thread (no exec, no fork, no ptrace family, no
   namespace or mount calls, no new socket at all, or AF_INET/AF_INET6 only when
   network was declared: it goes on once the worker's own ZeroMQ socket is
   connected and its event loop exists, see :func:`deny_new_sockets`).

A layer the machine lacks is reported as ``"off: <reason>"``, never silently
skipped.  Nothing here touches cgroups.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from runtime.limits import WORKER_THREADS_MAX

Layers = dict[str, str]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# Landlock (x86_64 syscall numbers; the ABI is probed at run time)
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _err() -> str:
    return os.strerror(ctypes.get_errno())


def set_rlimits(limits: Any) -> str:
    """Address space, open files, file size, core dumps (CPU time is the coordinator's deadline)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead of killing
    done = []
    for name, which, value in (
        ("as", resource.RLIMIT_AS, limits.worker_memory_bytes),
        ("nofile", resource.RLIMIT_NOFILE, limits.worker_open_files),
        ("fsize", resource.RLIMIT_FSIZE, limits.worker_file_size_bytes),
        ("core", resource.RLIMIT_CORE, 0),
    ):
        soft, hard = resource.getrlimit(which)
        target = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (target, target))
            done.append(name)
        except (ValueError, OSError) as exc:
            return f"partial: {name} failed ({exc})"
    return "on: " + ",".join(done)


def unshare_namespaces(network: bool, mount_ns: bool = False) -> str:
    """New ipc and uts namespaces, a new (empty) network namespace unless network was declared, and a
    private mount namespace when the worker will change uid (see :func:`expose_interpreter`)."""
    flags = CLONE_NEWIPC | CLONE_NEWUTS | (0 if network else CLONE_NEWNET) | (CLONE_NEWNS if mount_ns else 0)
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() != 0:
        # an unprivileged process may unshare the rest inside its own user namespace; a mount namespace too,
        # where its own ids are mapped, for private_dirs
        flags |= CLONE_NEWUSER | CLONE_NEWNS
    if _libc.unshare(flags) != 0:
        return f"off: unshare failed ({_err()})"
    if flags & CLONE_NEWUSER:
        _map_own_ids(uid, gid)
    return "on: " + ",".join(n for n, f in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC),
                                            ("uts", CLONE_NEWUTS), ("mount", CLONE_NEWNS)) if flags & f)


def _map_own_ids(uid: int, gid: int) -> None:
    """Map the worker's uid and gid to themselves in its new user namespace (nothing else is mapped): files it
    creates there (the staging of :func:`private_dirs`) then have an owner.  Best effort: unmapped, the worker
    runs as before and :func:`private_dirs` reports why it is off."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except OSError:
            return


# --- a uid of its own ----------------------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(v: str | None) -> bytes | None:
        return v.encode() if v is not None else None

    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} on {target}: {_err()}")


def _needed_trees() -> list[str]:
    """What a worker reads after dropping its uid: the interpreter, its packages, the runtime's own tree."""
    trees = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(__file__).resolve().parent.parent)}
    for entry in sys.path:
        p = Path(entry).resolve() if entry else None
        if p is not None and p.is_dir() and p.name in ("site-packages", "dist-packages"):
            trees.add(str(p))
    return sorted(trees)


def _blocking_ancestor(path: str) -> str | None:
    """The top-most directory on the way to ``path`` that another uid may not traverse (no o+x)."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        d = str(Path(*parts[:i + 1])) if i else "/"
        try:
            if not os.stat(d).st_mode & 0o001:
                return d
        except OSError:
            return None
    return None


def expose_interpreter(stage_dir: str) -> str:
    """In the worker's private mount namespace: hide the root-only directories that lie on the way to the
    interpreter (``/root`` when Python lives in ``~/.pyenv``) under an empty tmpfs, and bind back only the
    trees the worker reads.  Nothing else of them stays visible; the host's mounts are not affected
    (everything is made private first)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    plan: dict[str, list[str]] = {}
    for tree in _needed_trees():
        block = _blocking_ancestor(tree)
        if block is not None and block != tree:
            plan.setdefault(block, []).append(tree)
    exposed: list[str] = []
    for block, trees in plan.items():
        trees = [t for t in trees if not any(t != o and t.startswith(o + os.sep) for o in trees)]
        staged = []
        for i, tree in enumerate(trees):
            stage = os.path.join(stage_dir, f"stage{len(exposed) + i}")
            os.makedirs(stage, mode=0o700, exist_ok=True)
            _mount(tree, stage, None, MS_BIND | MS_REC)
            staged.append((tree, stage))
        _mount("tmpfs", block, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for tree, stage in staged:
            os.makedirs(tree, mode=0o755, exist_ok=True)
            _mount(stage, tree, None, MS_BIND | MS_REC)
            _libc.umount2(stage.encode(), MNT_DETACH)
            exposed.append(tree)
    return "re-exposed " + ",".join(exposed) if exposed else "nothing to re-expose"


PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/dev/shm")
"""Where host daemons put their sockets: an empty tmpfs over each in the worker's mount namespace."""
_HOST_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/localtime", "/etc/nsswitch.conf")
"""Files the worker reads (Landlock grants them) that are often symlinks into ``/run``."""


def private_dirs(endpoint: str, app_dir: str, extra: tuple[str, ...] = ()) -> str:
    """In the worker's private mount namespace: ``/tmp``, ``/run``, ``/dev/shm``... become empty (a tmpfs each),
    with only what the worker needs beneath them bound back at the same path: its endpoint's directory, its
    code, the interpreter's trees, the real targets of :data:`_HOST_FILES`.  The host's sockets there (and every
    other file) are not even visible.  Staging goes through the working directory by relative paths, which
    stay reachable when a tmpfs covers the directory they are in."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    keep = {os.path.dirname(endpoint[len("ipc://"):]), app_dir, *extra, *_needed_trees(),
            *(os.path.realpath(f) for f in _HOST_FILES if os.path.exists(f)),
            *(str(Path(e).resolve()) for e in sys.path if e and os.path.isdir(e))}
    covered: list[str] = []
    for top in dict.fromkeys(os.path.realpath(d) for d in PRIVATE_DIRS):
        if not os.path.isdir(top) or top == "/" or any(top.startswith(c + os.sep) for c in covered):
            continue
        mine = sorted(k for k in keep if k.startswith(top + os.sep) and os.path.exists(k))
        mine = [k for k in mine if not any(k.startswith(o + os.sep) for o in mine if o != k)]
        staged = []
        for i, path in enumerate(mine):
            stage = f"priv{len(covered)}-{i}"  # relative to the working directory, see above
            if os.path.isdir(path):
                os.makedirs(stage, mode=0o700, exist_ok=True)
            else:
                open(stage, "a").close()
            _mount(path, stage, None, MS_BIND | MS_REC)
            staged.append((path, stage))
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for path, stage in staged:
            if os.path.isdir(stage):
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                open(path, "a").close()
            _mount(stage, path, None, MS_BIND | MS_REC)
            _libc.umount2(stage.encode(), MNT_DETACH)
            (os.rmdir if os.path.isdir(stage) else os.unlink)(stage)
        covered.append(top)
    return "on: empty " + ",".join(covered) if covered else "off: none of " + ",".join(PRIVATE_DIRS) + " exists"


def drop_uid(uid: int) -> str:
    """``setgroups([])``, ``setresgid``, ``setresuid`` to the mount's own uid; the death signal again
    (the kernel clears it on a uid change)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise RuntimeError("setuid(0) succeeded after dropping privileges")
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return f"on: uid {uid}"


def no_new_privs() -> str:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"off: {_err()}"
    return "on"


def not_dumpable() -> str:
    if _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        return f"off: {_err()}"
    return "on"


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when unavailable."""
    abi = _libc.syscall(_SYS_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return int(abi) if abi > 0 else 0


def _read_paths(app_dir: str, code_files: list[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """(trees readable whole, directories listable only, single files readable).

    ``code_files`` is the worker's import closure (:mod:`sandbox.closure`): only those user files are
    readable, and only the directories on the way to them listable; the rest of the app tree and the other
    first-party components stay closed.  ``None`` (no closure known) opens every ``.py`` file of the app."""
    trees = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/etc/ssl",
             "/usr/share/zoneinfo", "/dev/urandom", "/dev/null", "/etc/localtime", "/etc/resolv.conf", "/etc/hosts",
             "/etc/nsswitch.conf"}
    dirs: set[str] = set()
    here = Path(__file__).resolve().parent.parent
    for pkg in ("runtime", "sandbox"):
        trees.add(str(here / pkg))
    dirs.update((str(here), str(here / "components")))  # listed by the import system; contents stay closed
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if p.name in ("site-packages", "dist-packages") or str(p).startswith(sys.base_prefix):
            trees.add(str(p))
    root = Path(app_dir).resolve()
    dirs.add(str(root))
    files: list[str] = []
    if code_files is None:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            dirs.add(dirpath)
            files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    else:
        for path in code_files:
            files.append(path)
            parent = Path(path).parent
            while parent not in (root, here, parent.parent) and (root in parent.parents or here in parent.parents):
                dirs.add(str(parent))
                parent = parent.parent
    return sorted(p for p in trees if os.path.exists(p)), sorted(dirs), files


def landlock(app_dir: str, network: bool, code_files: list[str] | None = None) -> str:
    """Restrict file access to reading code, TCP to nothing (unless network), signals and abstract sockets to self."""
    abi = landlock_abi()
    if abi < 1:
        return "off: Landlock is not available on this kernel"
    fs = (_FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
          | (_FS_IOCTL_DEV if abi >= 5 else 0))
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 and not network else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16 if abi >= 4 else 8
    fd = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if fd < 0:
        return f"off: landlock_create_ruleset failed ({_err()})"
    read = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    trees, dirs, files = _read_paths(app_dir, code_files)
    try:
        rules = [(p, read) for p in trees] + [(p, _FS_READ_DIR) for p in dirs] + [(p, _FS_READ_FILE) for p in files]
        rules.append(("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE))
        for path, access in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    access &= _FS_EXECUTE | _FS_READ_FILE | _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
                rule = _PathBeneath(access, pfd)
                if _libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    return f"off: landlock_add_rule({path}) failed ({_err()})"
            finally:
                os.close(pfd)
        if _libc.syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
            return f"off: landlock_restrict_self failed ({_err()})"
    finally:
        os.close(fd)
    parts = [f"abi {abi}", "files read-only (the interpreter and this mount's own code only)"]
    if net:
        parts.append("no tcp")
    if scoped:
        parts.append("signals and abstract sockets scoped")
    return "on: " + ", ".join(parts)


_SHARED_UID_DENIED = ("chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
                      "utime", "utimes", "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr",
                      "setxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
                      "sched_setparam", "sched_setattr", "sched_setaffinity", "ioprio_set")
"""Refused when the worker shares the daemon's uid: Landlock has no right for file modes, owners, times or
extended attributes, so the uid alone would let a worker ``chmod`` the data dir, the LMDB files or
``daemon.json`` by path; and scheduling or I/O priority calls reach every process of the uid.
``sched_setscheduler`` stays, to ``SCHED_OTHER`` only: every libzmq thread sets its own policy again
(``pthread_setschedparam`` by thread id, which seccomp cannot tell from another process's pid), and
``SCHED_OTHER`` with priority 0 is what a process of this uid already runs under."""
_X86_64_NEWER = {"fchmodat2": 452, "setxattrat": 463, "removexattrat": 466}
"""Syscalls younger than some libseccomp releases: their x86_64 numbers, when the library cannot name them."""


def _syscall_number(sc: Any, name: str) -> int | str | None:
    """``name`` if libseccomp knows it, else its x86_64 number (on x86_64), else ``None`` (left out)."""
    try:
        if int(sc.resolve_syscall(sc.Arch.NATIVE, name)) >= 0:
            return name
    except Exception:  # unknown names give a negative number (or an error)
        pass
    return _X86_64_NEWER.get(name) if os.uname().machine == "x86_64" else None


AF_INET, AF_INET6 = 2, 10


def deny_new_sockets(sc: Any, f: Any, network: bool) -> None:
    """No host socket is reachable: once the worker's own connection exists, ``socket()`` and ``socketpair()``
    are refused for every family (a pathname or abstract Unix socket, netlink, packet...), and ``connect()``
    too unless network was declared; with network, ``socket()`` is allowed for exactly ``AF_INET`` and
    ``AF_INET6``.  The family is compared as the full 64-bit register: the kernel truncates it to an ``int``,
    so ``AF_INET | 1 << 32`` (which is ``AF_INET`` to the kernel) does not match and is refused too.

    What this leaves: the descriptors opened before the filter (the worker's ZeroMQ socket, connected, and the
    event loop's self-pipe, a connected pair): ``connect()`` on them fails (``EISCONN``).  libzmq would need a
    new socket to reconnect; the worker sets no reconnection and is replaced when its connection drops."""
    deny = sc.ERRNO(errno.EPERM)
    f.add_rule(deny, "socketpair")
    if not network:
        f.add_rule(deny, "socket")
        f.add_rule(deny, "connect")
        return
    # everything but 2 and 10: one comparison per rule (libseccomp takes one per argument)
    f.add_rule(deny, "socket", sc.Arg(0, sc.LT, AF_INET))
    f.add_rule(deny, "socket", sc.Arg(0, sc.GT, AF_INET6))
    for fam in range(AF_INET + 1, AF_INET6):
        f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, fam))


def host_sockets(seccomp_state: str, network: bool) -> str:
    """The ``host_sockets`` layer: on exactly when the seccomp filter (holding :func:`deny_new_sockets`) loaded."""
    if not seccomp_state.startswith("on"):
        return f"off: seccomp is off ({seccomp_state})"
    if network:
        return "on: no new socket but AF_INET/AF_INET6 (network declared), no socketpair"
    return "on: no new socket, socketpair or connect after the worker's own connection"


def seccomp(network: bool, own_uid: bool = True) -> str:
    """A filter on every thread: no exec, fork, ptrace family, namespaces, mounts, bpf...; no new sockets
    (see :func:`deny_new_sockets`).

    Without a uid of its own (``own_uid`` false) also no change of file modes, owners, times or extended
    attributes, and no scheduling or I/O priority calls (see :data:`_SHARED_UID_DENIED`).
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:
        return f"off: libseccomp unavailable ({exc})"
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)
        # a syscall of another ABI (int 0x80: i386 socket/socketcall...) matches none of the rules: it kills the
        # whole worker (the default kills the calling thread only, which left a worker without its loop)
        f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
        deny = sc.ERRNO(errno.EPERM)
        for name in ("execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
                     "mount", "umount2", "unshare", "setns", "pivot_root", "chroot", "bpf", "perf_event_open",
                     "keyctl", "add_key", "request_key", "io_uring_setup", "userfaultfd", "kexec_load",
                     "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct",
                     "settimeofday", "clock_settime", "sethostname", "setdomainname", "personality", "kcmp",
                     "migrate_pages", "move_pages", "pidfd_getfd", "process_madvise", "memfd_create",
                     "name_to_handle_at", "open_by_handle_at", "io_uring_enter", "io_uring_register", "iopl", "ioperm",
                     "syslog", "quotactl", "lookup_dcookie", "fanotify_init", "mknod", "mknodat"):
            f.add_rule(deny, name)
        # calls that act on *another* process by pid (same uid, or root's CAP_SYS_NICE, is enough for the
        # kernel): this process only.  Thread-directed ones (sched_*, with a thread id) are left to the uid.
        for name, arg in (("prlimit64", 0), ("setpriority", 1)):
            f.add_rule(deny, name, sc.Arg(arg, sc.NE, 0))
        if not own_uid:
            f.add_rule(deny, "setpriority", sc.Arg(0, sc.NE, 0))  # PRIO_PGRP/PRIO_USER 0: the group, the uid
            for name in _SHARED_UID_DENIED:
                number = _syscall_number(sc, name)
                if number is not None:
                    f.add_rule(deny, number)
            f.add_rule(deny, "sched_setscheduler", sc.Arg(1, sc.NE, 0))  # SCHED_OTHER (0) only, no reset flag
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, 0x00010000, 0))  # clone without CLONE_THREAD = fork
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # glibc falls back to clone() for threads
        deny_new_sockets(sc, f, network)
        f.load()
    except Exception as exc:
        return f"off: seccomp filter failed ({exc})"
    return ("on: no exec/fork/ptrace/namespaces, no calls on other pids"
            + (", new sockets AF_INET/AF_INET6 only" if network else ", no new sockets")
            + ("" if own_uid else ", no chmod/chown/utime/xattr/priority calls (shared uid)"))


def _private_dirs_layer(config: dict[str, Any], mount_ns: bool) -> str:
    if not mount_ns:
        return "off: no mount namespace of its own"
    try:
        packages = tuple((config["code"].get("packages") or {}).values())  # installed components' directories
        return private_dirs(config["endpoint"], config["code"]["app_dir"], packages)
    except OSError as exc:
        return f"off: {exc}"


def harden_early(config: dict[str, Any], limits: Any) -> Layers:
    """Everything that must happen while the worker is single-threaded, in the reference's order:
    rlimits, namespaces (a private mount namespace too when changing uid), Landlock, the uid of its own,
    then ``NO_NEW_PRIVS`` and not dumpable (seccomp follows in :func:`harden_late`)."""
    network = bool(config.get("network"))
    uid = config.get("uid")
    try:  # loading libseccomp needs files (and a temp dir) that Landlock will close
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        pass
    layers: Layers = {}
    layers["rlimits"] = set_rlimits(limits)
    want_uid = uid is not None and os.geteuid() == 0
    layers["namespaces"] = unshare_namespaces(network, mount_ns=want_uid)
    exposed = ""
    if want_uid:
        try:
            exposed = expose_interpreter(os.getcwd())
        except OSError as exc:
            want_uid = False
            exposed = f"off: could not prepare the mount namespace ({exc})"
    layers["private_dirs"] = _private_dirs_layer(config, want_uid or (uid is None and "mount" in layers["namespaces"]))
    layers["landlock"] = landlock(config["code"]["app_dir"], network, config.get("code_files"))
    if uid is None:
        layers["separate_uids"] = f"off: the daemon is not root, every worker runs as uid {os.getuid()}"
    elif not want_uid:
        layers["separate_uids"] = exposed or "off: not root"
    else:
        try:
            layers["separate_uids"] = drop_uid(int(uid)) + f" ({exposed})"
        except (OSError, RuntimeError) as exc:
            layers["separate_uids"] = f"off: dropping to uid {uid} failed ({exc})"
    layers["no_new_privs"] = no_new_privs()
    layers["not_dumpable"] = not_dumpable()
    return layers




def harden_late(config: dict[str, Any]) -> Layers:
    """After the ZeroMQ threads exist: a cap on threads (per uid, so only with a uid of its own), then
    seccomp, synchronised to all threads."""
    if os.getuid() != 0 and config.get("uid") is not None and os.getuid() == config["uid"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (WORKER_THREADS_MAX, WORKER_THREADS_MAX))
    network = bool(config.get("network"))
    state = seccomp(network, own_uid=config.get("uid") is not None)
    return {"seccomp": state, "host_sockets": host_sockets(state, network)}
