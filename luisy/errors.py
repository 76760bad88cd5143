"""The luisy exception family.

Every error luisy raises on bad input derives from :class:`LuisyError`; its
:meth:`~LuisyError.format_message` is the one line the CLI prints. Where Python
has an established exception type for the situation (``ValueError`` for a bad
value, ``TypeError`` for a wrong object, ``ImportError`` for a missing package),
the luisy error also derives from it, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from luisy.texttable import printable


class LuisyError(Exception):
    """Base class of all luisy errors."""

    def format_message(self) -> str:
        """The message shown to a user, on one line, with no control characters a terminal would act on."""
        return printable(" ".join(str(self).split()))


class UnsafePathError(LuisyError, ValueError):
    """A task's output path would leave the working directory."""


class OutputMissingError(LuisyError, ValueError):
    """A task's output was read before the task ran."""


class FormatTypeError(LuisyError, TypeError):
    """An object cannot be written in a task's output format."""


class MissingExtraError(LuisyError, ImportError):
    """An optional dependency (of an output format, of ``Task.visualize``) is not installed."""


class OutputNotWrittenError(LuisyError):
    """A task's ``run()`` returned without writing its output."""


class NoOutputError(LuisyError, TypeError):
    """A task without an output of its own (a ``WrapperTask``) was asked to write one."""


class InstanceLookupError(LuisyError, ValueError):
    """``get_related_instances`` cannot tell from a task's output path which instances exist."""


class DecorationError(LuisyError, ValueError):
    """A decorator was applied to a class it cannot configure."""


class UnknownOptionError(DecorationError, TypeError):
    """A decorator was given a keyword option it does not take (a misspelt one, or one that belongs elsewhere)."""


class TaskLookupError(LuisyError):
    """A task given on the command line cannot be found or imported."""


class ParameterError(LuisyError):
    """A task parameter given on the command line is unknown or has a bad value."""


class FileReadError(LuisyError):
    """A file inside an input folder could not be read."""


class BrokenFileError(LuisyError, OSError):
    """A file luisy reads is not a regular file (a FIFO, a device, a folder, or one of luisy's own
    files replaced by a symbolic link), is larger than luisy ever writes such a file, or a folder
    of luisy's own is a symbolic link (see :mod:`luisy.regular_files`)."""


class SchedulerUnreachableError(LuisyError, ConnectionError):
    """The luigi central scheduler does not answer at the URL tried."""


class DaskClusterError(LuisyError, ConnectionError):
    """The Dask scheduler does not answer, went away during a run, or its workers cannot run the items."""


class ManifestError(LuisyError, ValueError):
    """A directory output's manifest does not parse, or lists files outside its folder (it is corrupt)."""


class ProvenanceError(LuisyError, ValueError):
    """The provenance a file carries, or an output's fingerprint record, is not what luisy writes."""


class ItemFileError(LuisyError, FileNotFoundError):
    """A published item's file is missing, damaged or outside its folder."""


class ItemError(LuisyError):
    """An item failed in a directory task with ``on_error="raise"``."""

    def __init__(self, message: str, traceback: str = "") -> None:
        """``traceback``: where in ``process`` the item failed (text; see :mod:`luisy.tracebacks`)."""
        super().__init__(message)
        self.traceback = traceback

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self), self.traceback)


class ReduceError(LuisyError):
    """A ``ReduceTask`` cannot reduce: not exactly one directory input, or a part of its items failed to fold."""


class NoFolderInput(LuisyError):
    """A directory task whose requirements are not exactly one folder."""


class ItemNameError(LuisyError, ValueError):
    """Two items of a directory output would share one file."""


class UnavailableFeatureError(LuisyError, NotImplementedError):
    """A luisy 1.x feature that luisy 2 does not have (cloud sync, Spark); the message says what to do."""


class SettingValueError(LuisyError, ValueError):
    """A setting in luigi's configuration has a value luisy cannot use, or its file cannot be parsed."""


class UnknownSettingError(LuisyError, KeyError, ValueError):
    """A setting name luisy does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
