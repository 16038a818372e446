"""Write WebDataset tar shards for tests: the one tar writer of the test helpers."""
import io
import tarfile
from typing import Iterable, Tuple

__all__ = ['add_tar_member', 'write_tar_shard']


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Append one regular file ``name`` holding ``data``, with fixed metadata
    (mtime 0, mode 644, uid / gid 0, no owner names), so equal members give
    equal bytes."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ''
    tar.addfile(info, io.BytesIO(data))


def write_tar_shard(path, members: Iterable[Tuple[str, bytes]],
                    format: int = tarfile.DEFAULT_FORMAT) -> str:
    """Write a tar shard of ``members`` (``(name, bytes)``, in this order: a
    WebDataset sample is the consecutive members sharing a key, e.g.
    ``('000001.jpg', ...), ('000001.txt', ...)``) and return its path as str.

    Duplicate or odd names are written as given (tests of bad shards need them).
    """
    with tarfile.open(path, 'w', format=format) as tar:
        for name, data in members:
            add_tar_member(tar, name, data)
    return str(path)
