"""Opening an HDF5 file for reading in bounded time, damaged files named with the reason.

A finished file is opened plainly: HDF5 then checks that the file is as long as its
superblock says and reads each metadata block once.  A file whose superblock says a
writer has it open (a run being written, or one whose writer was killed) must be opened
in SWMR read mode, where HDF5 skips the length check and retries a metadata block whose
checksum fails up to 100 times with exponentially growing sleeps: minutes on one
truncated file.  So for such files the length is checked here first, and the number of
metadata read attempts is lowered to `SWMR_READ_ATTEMPTS` (milliseconds in all), enough
for a reader racing its writer.  See ``docs/data-layout.md``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Metadata read attempts in SWMR read mode (HDF5's default, 100, sleeps for minutes).
SWMR_READ_ATTEMPTS = 16
# Superblock file consistency flags (superblock version 3).
_WRITE_ACCESS = 0x01
_SWMR_WRITE_ACCESS = 0x04


class DamagedFileError(OSError):
    """A file that cannot be read, with the reason; ``str()`` names the file.

    Attributes
    ----------
    path : Path
    reason : str
    transient : bool
        The file is open by a writer (or its writer died), so what was seen may be a
        moment of that writer's work and a retry may succeed.
    """

    def __init__(self, path: str | Path, reason: str, *, transient: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Superblock:
    """What HDF5's superblock says about a file (the fields the checks need).

    Attributes
    ----------
    version : int
    base : int
        Absolute address the file's addresses are relative to (bytes).
    eof : int
        End-of-file address recorded by the last writer (bytes).
    flags : int
        File consistency flags (version 3 only): a writer has the file open.
    """

    version: int
    base: int
    eof: int
    flags: int

    @property
    def writer_open(self) -> bool:
        """The file is open for writing, or its writer died without closing it."""
        return self.version >= 3 and bool(self.flags & (_WRITE_ACCESS | _SWMR_WRITE_ACCESS))


def read_superblock(path: str | Path) -> tuple[Superblock, int]:
    """The superblock of ``path`` and the file's size in bytes.

    Raises
    ------
    DamagedFileError
        The path is not a regular file (a directory, a symbolic link loop, ...), cannot
        be read, or holds no HDF5 superblock.
    """
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DamagedFileError(path, "not a regular file")
            offset = 0
            while offset + len(SIGNATURE) <= info.st_size:  # after a user block of 2^k KiB
                file.seek(offset)
                head = file.read(64)
                if head.startswith(SIGNATURE):
                    return _parse(path, head), info.st_size
                offset = 512 if offset == 0 else 2 * offset
    except OSError as exc:
        if isinstance(exc, DamagedFileError):
            raise
        raise DamagedFileError(path, exc.strerror or str(exc)) from None
    raise DamagedFileError(path, "not an HDF5 file")


def _parse(path: str | Path, head: bytes) -> Superblock:
    version = head[8]
    if version >= 2:
        width, flags, first = head[9], head[11], 12
    else:  # versions 0 and 1 have no consistency flags
        width, flags, first = head[13], 0, 24 if version == 0 else 28
    # base address, then free-space (v0/1) or extension (v2/3) address, then end of file
    end = first + 3 * width
    if width not in (2, 4, 8) or len(head) < end:
        raise DamagedFileError(path, f"damaged HDF5 superblock (version {version})")
    base = int.from_bytes(head[first : first + width], "little")
    eof = int.from_bytes(head[first + 2 * width : end], "little")
    return Superblock(version, base, eof, flags)


def open_readable(path: str | Path) -> h5py.File:
    """Open ``path`` read-only in bounded time: plainly, or in SWMR mode if a writer has it.

    Returns
    -------
    h5py.File
        Opened with ``swmr=True`` semantics when the superblock says a writer has it
        open (check ``file.swmr_mode``); the caller closes it.

    Raises
    ------
    DamagedFileError
        Not a readable HDF5 file: not a regular file, no superblock, shorter than its
        superblock says (truncated), or HDF5 refuses it; ``transient`` if a writer has it.
    """
    superblock, size = read_superblock(path)
    live = superblock.writer_open
    if size + superblock.base < superblock.eof:  # HDF5's own check, skipped in SWMR mode
        reason = f"truncated: {size} bytes of the {superblock.eof} its superblock records"
        raise DamagedFileError(path, reason, transient=live)
    try:
        return _open_swmr(path) if live else h5py.File(path, "r")
    except OSError as exc:
        raise DamagedFileError(path, hdf5_reason(exc), transient=live) from None


def _open_swmr(path: str | Path) -> h5py.File:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    set_attempts = _read_attempts_setter()
    if set_attempts is not None:
        set_attempts(fapl.id, SWMR_READ_ATTEMPTS)
    flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))


@functools.cache
def _read_attempts_setter() -> Callable[[int, int], int] | None:
    """``H5Pset_metadata_read_attempts`` of the HDF5 library h5py runs on, if found.

    h5py does not wrap this HDF5 function.  The library is located among the files this
    process has mapped (Linux ``/proc/self/maps``): the copy in h5py's wheel, or the only
    one.  Elsewhere, or if that is ambiguous, this gives None and SWMR reads keep HDF5's
    default attempts (the length check still catches truncated files).
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libraries = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)  # address perms offset device inode [path]
        name = Path(fields[-1]).name if len(fields) == 6 else ""
        if name.startswith("libhdf5") and "_hl" not in name:  # the core library
            libraries.add(fields[-1])
    # Another package may have mapped its own copy: prefer the one in h5py's wheel.
    bundled = {p for p in libraries if Path(p).parent.name == "h5py.libs"}
    libraries = bundled or libraries
    if len(libraries) != 1:
        return None
    try:
        function = ctypes.CDLL(libraries.pop()).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int64, ctypes.c_uint]  # hid_t is 64 bits since HDF5 1.10
    function.restype = ctypes.c_int
    return function


def hdf5_reason(exc: OSError) -> str:
    """HDF5's reason in one line: ``truncated file: eof = ...`` from h5py's message."""
    text = " ".join(str(exc).split())
    inner = text.partition("(")[2].rpartition(")")[0]
    return inner or text
