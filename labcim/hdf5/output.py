"""Where labcim may write: its own results, never over a file another program wrote.

A results location (`labcim.hdf5.layout.Location`) is written in two ways: run files are
added to its run directory, and its index file is rebuilt and renamed over the old one.
`check_output` is the one place that decides, before anything is written (and before
``labcim run`` or a campaign connects to hardware), that this destroys nothing: the
index path is free or holds a labcim index, the run directory is free or a directory.
`write_index` asks again just before it replaces the index, and run files are put in
place with `place_file`, which never replaces an existing name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py

from labcim.hdf5.layout import (
    ENTRY,
    FORMAT,
    FORMAT_ATTR,
    INDEX_FORMAT,
    NX_CLASS,
    RUN_FILE,
    Location,
)
from labcim.hdf5.opening import DamagedFileError, hdf5_reason, read_superblock

_ADVICE = "labcim never overwrites it: give another output path"


class ForeignFileError(FileExistsError):
    """A path where labcim would have to overwrite something it did not write."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(errno.EEXIST, f"{path}: {reason}; {_ADVICE}")
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return self.strerror


def check_output(path: str | Path) -> Location:
    """The location of ``path``, if labcim may write its runs there; nothing is changed.

    Parameters
    ----------
    path : str or Path
        As given to `labcim.HDF5Writer` (``--out``): an index file or a directory.

    Raises
    ------
    ForeignFileError
        The index path holds anything but a labcim index (another program's HDF5 file,
        a text file, a labcim run file, a directory, a symbolic link), or the run
        directory's path holds something that is not a directory.
    """
    location = Location.from_path(path)
    check_index(location)
    run_dir = location.run_dir
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise ForeignFileError(run_dir, "exists and is not a directory (runs go in it)")
    return location


def check_index(location: Location) -> None:
    """Raise `ForeignFileError` unless ``location.index`` is free or a labcim index."""
    index = location.index
    if index.is_symlink():
        raise ForeignFileError(index, "is a symbolic link, which rebuilding the index replaces")
    if not index.exists():
        return
    if not index.is_file():
        raise ForeignFileError(index, "exists and is not a file")
    reason = _not_an_index(index, location)
    if reason:
        raise ForeignFileError(index, f"exists and is not a labcim index ({reason})")


def _not_an_index(index: Path, location: Location) -> str:
    """Why ``index`` is not labcim's index of ``location`` ("" if it is)."""
    try:
        read_superblock(index)
    except DamagedFileError as exc:
        return exc.reason
    try:
        file = h5py.File(index, "r")  # plain: an index is never open for writing
    except OSError as exc:
        return f"an HDF5 file that cannot be opened: {hdf5_reason(exc)}"
    with file:
        mark = file.attrs.get(FORMAT_ATTR)
        if mark == INDEX_FORMAT:
            return ""
        if mark == FORMAT:
            return "a labcim run file; give the results file or directory it belongs to"
        if _unmarked_index(file, location):
            return ""
        return f"an HDF5 file without labcim's {FORMAT_ATTR!r} mark"


def _unmarked_index(file: h5py.File, location: Location) -> bool:
    """An index written before labcim marked them: only links to runs of ``location``."""
    if file.attrs.get(NX_CLASS) != "NXroot" or set(file.attrs) - {NX_CLASS, "default"}:
        return False
    links = [file.get(name, getlink=True) for name in file]
    run_dir = location.run_dir.resolve()
    return bool(links) and all(
        isinstance(link, h5py.ExternalLink)
        and link.path == f"/{ENTRY}"
        and RUN_FILE.fullmatch(Path(link.filename).name) is not None
        and (location.index.parent / link.filename).parent.resolve() == run_dir
        for link in links
    )


def place_file(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, refusing to replace an existing ``target``.

    A hard link then removing ``source`` is atomic and fails if ``target`` exists,
    which ``os.rename`` would silently replace on POSIX.  On a file system without hard
    links (FAT, some network shares) it falls back to a rename after checking.

    Raises
    ------
    ForeignFileError
        If ``target`` exists.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise ForeignFileError(target, "exists") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
            raise
        if os.path.lexists(target):
            raise ForeignFileError(target, "exists") from None
        os.rename(source, target)
        return
    os.unlink(source)
