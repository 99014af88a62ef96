"""Figures, tables, model and state files labcim writes beside its results.

The same rule as for results files (`labcim.hdf5.output`): a name is written when it is
free or holds a file of the same kind that labcim wrote before (running ``labcim show
--plot`` again refreshes its figures); anything else in the way is refused with
`ForeignFileError` before it is touched.  Each kind is told by a mark labcim puts in its
files: the PNG's ``Software`` text chunk, the CSV's header, the model file's first line,
the header array of a saved chip or network.
A file is written under a temporary name in the same folder and renamed over the old
one, so a crash leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import errno
import os
import uuid
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from labcim import __version__
from labcim.hdf5.output import ForeignFileError

PNG_SOFTWARE = f"labcim {__version__}"
"""The PNG ``Software`` text of labcim's figures (``metadata=`` of ``savefig``)."""

_HEAD = 65536  # characters read to recognize a file by its first line


def labcim_png(path: Path) -> bool:
    """Whether ``path`` is a PNG image whose ``Software`` text says labcim made it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=["PNG"]) as image:  # reads the chunks before the pixels
            return str(image.info.get("Software", "")).startswith("labcim ")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False  # not a PNG, a damaged one, or one far larger than any of labcim's


def first_line(path: Path) -> str:
    """The first line of text file ``path`` without its end ("" if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", newline="") as file:
            return file.readline(_HEAD).rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return ""


def csv_with_header(*start: str) -> Callable[[Path], bool]:
    """A test for CSV files whose header line begins with the columns ``start``."""

    def ours(path: Path) -> bool:
        return tuple(first_line(path).split(",")[: len(start)]) == start

    return ours


def npz_holding(member: str) -> Callable[[Path], bool]:
    """A test for ``.npz`` files that hold an array named ``member`` (the JSON header
    labcim's chip-state and network-model files carry); only the zip's names are read."""

    def ours(path: Path) -> bool:
        try:
            with zipfile.ZipFile(path) as archive:
                return f"{member}.npy" in archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return False

    return ours


def check_free(targets: Iterable[tuple[Path, Callable[[Path], bool], str]]) -> None:
    """Raise `ForeignFileError` for the first ``(path, ours, kind)`` whose path holds
    something ``ours`` does not recognize; nothing is changed.

    ``kind`` names what labcim would write there (``"figure"``, ``"table"``, ...).
    """
    for path, ours, kind in targets:
        if path.is_symlink():
            raise ForeignFileError(path, f"is a symbolic link where labcim writes a {kind}")
        if os.path.lexists(path) and not (path.is_file() and ours(path)):
            raise ForeignFileError(path, f"exists and is not a {kind} labcim wrote")


def write_file(
    path: str | Path, write: Callable[[Path], None], ours: Callable[[Path], bool], kind: str
) -> Path:
    """Write a file with ``write(temporary_path)`` and put it at ``path``.

    Raises
    ------
    ForeignFileError
        If ``path`` holds something labcim did not write (checked before writing).
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    path = Path(path)
    check_free([(path, ours, kind)])
    if not path.absolute().parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{path}: the folder {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask's mode
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
