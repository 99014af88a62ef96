"""A ``labcim`` command on a real pseudo-terminal, as a person at a terminal runs it.

The child is a session leader with the pty as its controlling terminal, so writing
Ctrl-C (0x03) to the master makes the terminal send SIGINT to it, as a keyboard does.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

from campaign_helpers import labcim

CTRL_C = b"\x03"


class Terminal:
    """``labcim ARGS...`` running on a pty of 24 x 120 (tqdm draws nothing at 0 x 0).

    Attributes
    ----------
    output : bytes
        Everything the command printed so far (stdout and stderr, as on a terminal).
    """

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            labcim(*args),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.master = master
        self.output = b""

    def expect(self, pattern: bytes, timeout: float = 120.0) -> re.Match[bytes]:
        """Read until ``pattern`` (a regex) appears in the output after what an earlier
        ``expect`` matched; AssertionError with the output's end if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            if match := re.compile(pattern).search(self.output, getattr(self, "_pos", 0)):
                self._pos = match.end()
                return match
            left = deadline - time.monotonic()
            assert left > 0 and self._read(left), (
                f"no {pattern!r} in the output:\n{self.text[-3000:]}"
            )

    def send(self, data: bytes) -> None:
        """Type ``data`` (a line of input, or Ctrl-C)."""
        os.write(self.master, data)

    def wait(self, timeout: float = 120.0) -> int:
        """Read until the command exits; its exit status."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and self._read(left):
            pass
        return self.process.wait(max(1.0, deadline - time.monotonic()))

    @property
    def text(self) -> str:
        """The output as text, carriage returns as line ends."""
        return self.output.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")

    def _read(self, timeout: float) -> bool:
        """Read what arrives within ``timeout`` s; False once the child closed the pty."""
        if not select.select([self.master], [], [], timeout)[0]:
            return self.process.poll() is None
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child exited and the pty is closed
            return False
        self.output += data
        return bool(data)

    def close(self) -> None:
        """Kill the command if it still runs; release the pty."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
