"""Tracebacks as plain text: kept for every failed item and task, shown trimmed to the user's code.

A traceback is stored whole (``-v`` shows it so) and trimmed when shown: frames in luisy, in
luigi and in the standard library's process and thread machinery say nothing about where a
user's code went wrong, so only the other frames are shown, with the exception line(s). Text,
not traceback objects: outcomes travel between processes and machines, and manifests and the
run journal are JSON.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback

import luigi

from luisy.errors import ItemError, LuisyError

__all__ = ["format_traceback", "traceback_of", "explanation", "parse_explanation", "user_frames",
           "exception_line", "where", "indented"]

#: Innermost frames kept per exception: a deep recursion must not make a manifest of gigabytes.
MAX_FRAMES = 50
#: How luigi's own ``Task.on_failure`` starts the text it sends to the scheduler.
_LUIGI_PREFIX = "Runtime error:"
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+), in (?P<function>.*)$')
_HEADER = "Traceback (most recent call last):"


def _machinery() -> tuple[str, ...]:
    """Folders whose frames are trimmed: luisy's, luigi's, and the stdlib's processes and threads."""
    stdlib = sysconfig.get_paths()["stdlib"]
    folders = [os.path.dirname(__file__), os.path.dirname(luigi.__file__ or ""),
               os.path.join(stdlib, "concurrent"), os.path.join(stdlib, "multiprocessing")]
    files = [os.path.join(stdlib, name) for name in ("threading.py", "runpy.py")]
    return (*(folder + os.sep for folder in folders), *files)


_TRIMMED = _machinery()


def format_traceback(error: BaseException) -> str:
    """The whole traceback of ``error`` (its innermost :data:`MAX_FRAMES` frames), as Python prints it."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-MAX_FRAMES))


def traceback_of(error: BaseException) -> str:
    """The traceback worth keeping for ``error``: an item's for an :class:`ItemError`, none for
    another luisy error (its one line says what is wrong), else the error's own."""
    if isinstance(error, ItemError):
        return error.traceback
    if isinstance(error, LuisyError):
        return ""
    return format_traceback(error)


def explanation(error: BaseException) -> str:
    """What a luisy task sends the luigi scheduler about ``error``: a luisy error's one line, with
    the failed item's traceback on the lines after it; luigi's usual text for other errors."""
    if isinstance(error, LuisyError):
        text = traceback_of(error)
        return error.format_message() + (f"\n{text}" if text else "")
    return f"{_LUIGI_PREFIX}\n{format_traceback(error)}"


def parse_explanation(text: str) -> tuple[str, str]:
    """``(error line, traceback)`` of a scheduler's error text (see :func:`explanation`; also
    luigi's own, from plain luigi tasks)."""
    text = text.strip("\n")
    first, _, rest = text.partition("\n")
    if first.strip() == _LUIGI_PREFIX or first.strip() == _HEADER:
        trace = rest if first.strip() == _LUIGI_PREFIX else text
        return exception_line(trace) or "(no error text)", trace
    return first.strip() or "(no error text)", rest


def _blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """The lines of ``text`` in blocks: ``(file, lines)`` per frame, ``(None, [line])`` otherwise."""
    blocks: list[tuple[str | None, list[str]]] = []
    in_frame = False
    for line in text.splitlines():
        match = _FRAME.match(line)
        if match:
            blocks.append((match["file"], [line]))
            in_frame = True
        elif in_frame and (line.startswith("    ") or line.lstrip().startswith("[Previous line repeated")):
            blocks[-1][1].append(line)  # the frame's source line, its carets, its repetitions
        else:
            blocks.append((None, [line]))
            in_frame = False
    return blocks


def user_frames(text: str) -> str:
    """``text`` without the frames of luisy, luigi and the process machinery, and without the
    ``Traceback (most recent call last):`` headers and blank lines."""
    kept = []
    for file, lines in _blocks(text):
        if file is not None and file.startswith(_TRIMMED):
            continue
        if file is None and (not lines[0].strip() or lines[0].strip() == _HEADER):
            continue
        kept.extend(lines)
    return "\n".join(kept)


def exception_line(text: str) -> str:
    """The first line of the last exception in a traceback ("KeyError: 'x'")."""
    blocks = _blocks(text)
    last_frame = max((i for i, (file, _) in enumerate(blocks) if file is not None), default=-1)
    rest = [lines[0] for _, lines in blocks[last_frame + 1:] if lines[0].strip()]
    return rest[0].strip() if rest else ""


def where(text: str) -> str:
    """The innermost frame of the user's code: ``file:line in function``; ``""`` if there is none."""
    frames = [match for file, lines in _blocks(text) if file is not None and not file.startswith(_TRIMMED)
              for match in [_FRAME.match(lines[0])] if match is not None]
    if not frames:
        return ""
    frame = frames[-1]
    return f"{frame['file']}:{frame['line']} in {frame['function']}"


def indented(text: str, prefix: str) -> list[str]:
    """The lines of ``text``, each after ``prefix``."""
    return [prefix + line for line in text.splitlines()]
