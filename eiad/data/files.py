"""A file's bytes at a second path without a second copy, where the file system allows it."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Literal

Placement = Literal["reflink", "hardlink", "copy"]
FICLONE = 0x40049409  # Linux ioctl: the new file shares the source's blocks, copy-on-write
# the file system cannot share these bytes (other device, no support, too many links, or
# fs.protected_hardlinks refusing a file owned by another user): a copy it is
_CANNOT_SHARE = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
                 errno.EINVAL, errno.ENOTTY, errno.ENOSYS}
_NO_REFLINK: set[int] = set()  # devices that refused a reflink once: not asked again


def place(source: Path, dest: Path) -> Placement:
    """Put ``source``'s bytes at ``dest`` (which must not exist): a reflink (btrfs, XFS: an
    independent file sharing the blocks), else a hard link (ext4: one file, two names), else a copy."""
    if _reflink(source, dest):
        return "reflink"
    try:
        os.link(source, dest)
        return "hardlink"
    except OSError as err:
        if err.errno not in _CANNOT_SHARE:
            raise
    shutil.copyfile(source, dest)
    return "copy"


def _reflink(source: Path, dest: Path) -> bool:
    device = os.stat(os.path.dirname(dest)).st_dev  # a string: Path.parent costs more than the stat
    if device in _NO_REFLINK:
        return False
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        _NO_REFLINK.add(device)
        return False
    with open(source, "rb") as src, open(dest, "xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return True
        except OSError as err:
            if err.errno not in _CANNOT_SHARE:
                raise
    dest.unlink()
    _NO_REFLINK.add(device)
    return False
