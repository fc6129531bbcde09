"""Opening the LMDB environment: permissions, named databases, sizing.

The data directory is created 0700 and the LMDB files 0600 (``mode=0o600``;
the umask is narrowed while opening so nothing more permissive slips through).
py-lmdb sets ``MDB_NOTLS``, so a read transaction may be used from any thread
(never from two at once); write transactions belong to the committer thread.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from runtime.errors import StorageError
from runtime.limits import Limits
from runtime.storage import keys


@dataclass
class Env:
    """An open LMDB environment and its named databases."""

    lmdb: Any
    dbs: dict[bytes, Any]
    path: Path

    def close(self) -> None:
        """Close the environment (every transaction must be finished)."""
        self.lmdb.close()


def open_env(path: str | os.PathLike[str], limits: Limits) -> Env:
    """Open (creating if needed) the environment under ``path``."""
    root = Path(path)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(root.stat().st_mode) & 0o077:
            os.chmod(root, 0o700)
        (root / "lmdb").mkdir(mode=0o700, exist_ok=True)  # lmdb.open(mode=0o600) would make it without x
        old_umask = os.umask(0o077)
        try:
            env = lmdb.open(
                str(root / "lmdb"),
                map_size=limits.lmdb_map_size_bytes,
                max_dbs=len(keys.ALL_DBS) + 2,
                max_readers=limits.lmdb_max_readers,
                subdir=True,
                mode=0o600,
                sync=True,
                metasync=True,
                readahead=False,
            )
        finally:
            os.umask(old_umask)
    except (OSError, lmdb.Error) as exc:
        raise StorageError(f"cannot open the data directory {root}: {exc}") from exc
    os.chmod(root / "lmdb", 0o700)
    dbs = {name: env.open_db(name) for name in keys.ALL_DBS}
    return Env(lmdb=env, dbs=dbs, path=root)
