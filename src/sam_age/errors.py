"""One exception hierarchy for the package; the CLI maps each kind to an exit code once.

Every message is a single line that names the file (when there is one) and the problem,
so a shell user never sees a traceback for a bad input.
"""

from __future__ import annotations

import errno as _errno
import re
from pathlib import Path
from typing import Optional, Type, Union

from .fileio import shown

PathLike = Union[str, Path]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def brief(text: str, limit: int = 160) -> str:
    """A foreign message (torch's, dlib's, a server's) made short for a one-line error
    without cutting a sentence: its first line, as many whole sentences as fit in
    ``limit`` characters, and always the whole first sentence."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    sentences = _SENTENCE_END.split(lines[0])
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}"
    return out


# The exit codes of every command (the CLI maps errors to them once, in cli/main.py).
EXIT_OK = 0  # everything worked
EXIT_SOME_FAILED = 1  # some inputs failed (each named on stderr), the rest were done
EXIT_USAGE = 2  # bad flags, or a weights/checkpoint problem: nothing was done
EXIT_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT, as shells report it)

# Write errors after which no later input can be written either: a batch stops (exit 1).
STOP_ERRNOS = frozenset(e for e in (getattr(_errno, n, None) for n in ("ENOSPC", "EDQUOT", "EROFS")) if e)


class SamAgeError(Exception):
    """Base class. ``exit_code`` is what the CLI returns when this stops a command."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: Optional[PathLike] = None):
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)


class CheckpointError(SamAgeError):
    """A weights file is missing, truncated, corrupt, of another kind, or unsafe."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked to import or call something other than plain tensors/arrays."""


class WeightsUnavailableError(CheckpointError):
    """An official weights file is not in the cache and cannot be fetched (offline).
    Its text is a short block (what is missing, then the manual steps, one per line:
    ``weights.store.manual_steps``); ``reason`` is the same text on one line."""

    def __init__(self, message: str, path: Optional[PathLike] = None):
        super().__init__(message, path)
        block = "\n".join(line.rstrip() for line in str(message).splitlines() if line.strip())
        self.args = (f"{self.path}: {block}" if self.path else block,)


class UsageError(SamAgeError):
    """Bad command-line arguments or API arguments."""


class InputError(SamAgeError):
    """One input (an image) cannot be used; a batch goes on past it (exit 1 overall)."""

    exit_code = EXIT_SOME_FAILED


class WriteError(InputError):
    """An input's results could not be written (disk full, quota, read-only, ...): that
    input fails and its partial result is removed. ``errno`` says whether the next input
    can fare better: a full or read-only disk stops the run (:data:`STOP_ERRNOS`)."""

    def __init__(self, message: str, path: Optional[PathLike] = None, errno: Optional[int] = None):
        super().__init__(message, path)
        self.errno = errno


class ImageReadError(InputError):
    """Unreadable, truncated, not an image, too small or too large (decompression bomb)."""


class NoFaceError(InputError):
    """The image was read but no face was found in it."""


class VideoReadError(InputError):
    """Not a video, an image given as a video, empty, truncated, or no video stream."""


def exists_error(
    path: PathLike, about: Optional[PathLike] = None, error: Type[SamAgeError] = InputError
) -> SamAgeError:
    """The one refusal of a result in the way, in every command (``--overwrite`` lifts it):
    ``error`` (an input fails: :class:`InputError`; nothing done: :class:`UsageError`) whose
    message names ``path``; ``about``: the input it was for, when there is one."""
    return error(f"output {shown(path)} already exists (use --overwrite to replace it)", about)
