"""One :class:`Format` per file type: its extension, what objects it takes, how to read and write.

Formats import their library (pandas, pyarrow, h5py, scikit-image) only when they read or write,
and never import tasks or targets. Keyword arguments given to an output decorator are routed to
the reader and/or writer that names them, so read-only keywords (``usecols``) never reach the
writer and write-only ones (``index``) never reach the reader.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import json
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from luisy.errors import BrokenFileError, FormatTypeError, MissingExtraError
from luisy.regular_files import open_or_read, open_regular

_SCALARS = (bool, int, float, complex, str, bytes)

#: Where parquet (key-value metadata) and HDF5 files (a root attribute) keep luisy's provenance.
PROVENANCE_KEY = "luisy_provenance"
#: Returns what a file should say about where it came from (asked only by formats that embed it).
Provenance = Callable[[], Mapping[str, Any]]


def require(module: str, extra: str | None, purpose: str) -> Any:
    """Import ``module`` or raise an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        hint = f"pip install 'luisy[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtraError(f"{purpose} needs the package {module!r}: {hint}") from error


def _loaded_type(module: str, name: str) -> type | None:
    """A class from an already imported module; if the module is not imported, no object is one."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def is_dataframe(obj: Any) -> bool:
    cls = _loaded_type("pandas", "DataFrame")
    return cls is not None and isinstance(obj, cls)


def is_ndarray(obj: Any) -> bool:
    cls = _loaded_type("numpy", "ndarray")
    return cls is not None and isinstance(obj, cls)


class Format:
    """A file type. Subclasses set ``name``, ``ext``, ``accepts`` and implement ``_write`` and
    ``_read`` (which opens the path itself), ``_read_open`` (which reads the file luisy opened) or
    ``_loads`` (which parses the bytes luisy read)."""

    name: str = ""
    ext: str = ""
    accepts: str = "any object"
    extra: str | None = None
    #: Whether files of this format carry luisy's provenance metadata.
    embeds: bool = False
    #: Whether the format's library also reads a folder (a dataset of parts) at the path.
    reads_folders: bool = False
    #: Up to which size the format parses a file from its bytes (``_loads``; ``None``: never):
    #: luisy reads them in one call, without a file object, most of what a small file takes to read.
    loads_up_to: int | None = None
    #: Whether ``_loads`` takes the file as text (UTF-8, universal newlines), not bytes.
    loads_text: bool = False

    def check(self, obj: Any) -> bool:
        """Whether ``obj`` can be written in this format."""
        return True

    def ensure_writable(self, obj: Any, owner: str) -> None:
        """Raise a TypeError naming ``owner``, the format and the type, before anything is written."""
        if not self.check(obj):
            raise FormatTypeError(
                f"{owner}: {self.name} output takes {self.accepts}, got {type(obj).__module__}."
                f"{type(obj).__qualname__}"
            )

    def read(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Read the object stored at ``path``: a regular file, never a FIFO (which would block the
        reader for ever) or a device (:class:`~luisy.errors.BrokenFileError` naming it)."""
        return self.read_from(path, options)

    def read_from(self, path: str | os.PathLike[str], options: Mapping[str, Any], *, links: bool = True) -> Any:
        """:meth:`read` with the keywords as a mapping. ``links=False``: a symbolic link at ``path``
        is not followed (a :class:`~luisy.errors.BrokenFileError`, as anything but a regular file)."""
        path, kwargs = os.fspath(path), self._read_options(options)
        try:
            if self.loads_up_to is None:
                f = open_regular(path, own=not links)
            else:
                got = open_or_read(path, own=not links, at_most=self.loads_up_to)
                if isinstance(got, bytes):
                    data: bytes | str = _text(got) if self.loads_text else got
                    del got  # decoded: the bytes go before the text is parsed
                    return self._loads(data, path, **kwargs)
                f = got
        except BrokenFileError:
            if not (links and self.reads_folders and os.path.isdir(path)):
                raise
            return self._read(path, **kwargs)
        with f:
            return self._read_open(f, path, **kwargs)

    def _read_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        if not options:
            return {}
        read_kw, _ = self.split_options(tuple(sorted(options)))
        return {k: options[k] for k in read_kw}

    def _loads(self, data: Any, path: str, **options: Any) -> Any:
        """The object in ``data``, the bytes (or :attr:`loads_text`: the text) of the file at
        ``path`` (see :attr:`loads_up_to`)."""
        raise NotImplementedError

    def _read_open(self, f: BinaryIO, path: str, **options: Any) -> Any:
        """Read the object from ``f``, the file at ``path`` opened. By default the format's library
        opens ``path`` itself: ``f``, held open meanwhile, only made sure that it is a regular file."""
        return self._read(path, **options)

    def write(self, obj: Any, path: str | os.PathLike[str], provenance: Provenance | None = None,
              **options: Any) -> None:
        """Write ``obj`` to ``path`` (not atomic by itself: targets make it so).

        ``provenance`` returns what the file should say about where it came from; formats that
        carry metadata (parquet, HDF5) store it as JSON under ``luisy_provenance``, others ignore it.
        """
        _, write_kw = self.split_options(tuple(sorted(options)))
        kwargs = {k: options[k] for k in write_kw}
        if provenance is not None and self.embeds:
            self._write_with(obj, os.fspath(path), json.dumps(provenance(), sort_keys=True), **kwargs)
        else:
            self._write(obj, os.fspath(path), **kwargs)

    def _write_with(self, obj: Any, path: str, provenance: str, **options: Any) -> None:
        """:meth:`_write`, storing the JSON text ``provenance`` in the file (where :attr:`embeds`)."""
        raise NotImplementedError

    # Which library functions the keywords are meant for; formats without keywords keep these.
    def _reader_signature(self) -> Callable[..., Any] | None:
        return None

    def _writer_signature(self) -> Callable[..., Any] | None:
        return None

    def option_names(self) -> tuple[frozenset[str], bool]:
        """The keywords the reader or the writer names, and whether either takes any keyword (``**kwargs``)."""
        (read_names, read_any), (write_names, write_any) = (
            _accepted(self._reader_signature()), _accepted(self._writer_signature()))
        return read_names | write_names, read_any or write_any

    @functools.cache  # noqa: B019 - formats are module-level singletons
    def split_options(self, keys: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
        """Split keyword names into (reader keywords, writer keywords)."""
        if not keys:
            return frozenset(), frozenset()
        sides = [_accepted(self._reader_signature()), _accepted(self._writer_signature())]
        routed: list[set[str]] = [set(), set()]
        for key in keys:
            named = [i for i, (names, _) in enumerate(sides) if key in names]
            targets = named or [i for i, (_, var_kw) in enumerate(sides) if var_kw]
            if not targets:
                raise TypeError(f"{self.name} output does not take the keyword argument {key!r}")
            for i in targets:
                routed[i].add(key)
        return frozenset(routed[0]), frozenset(routed[1])

    def _read(self, path: str, **options: Any) -> Any:
        raise NotImplementedError

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<luisy format {self.name}>"


class Reading:
    """Reads files of one format with the keywords its reader takes: ``reading(path)``."""

    def __init__(self, file_format: Format, options: Mapping[str, Any]) -> None:
        self.format, self.options = file_format, options

    def __call__(self, path: str | os.PathLike[str]) -> Any:
        return self.format.read_from(path, self.options)

    def unlinked(self, path: str | os.PathLike[str]) -> Any:
        """Read ``path``, which must be a regular file, not a symbolic link to one."""
        return self.format.read_from(path, self.options, links=False)


def _text(data: bytes) -> str:
    """``data`` as UTF-8 text with universal newlines, as a file opened in text mode reads it."""
    text = data.decode("utf-8")
    return io.IncrementalNewlineDecoder(None, translate=True).decode(text, final=True) if "\r" in text else text


def _accepted(func: Callable[..., Any] | None) -> tuple[frozenset[str], bool]:
    """Explicit keyword names of ``func`` (minus the object and path) and whether it takes ``**kwargs``."""
    if func is None:
        return frozenset(), False
    params = inspect.signature(func).parameters.values()
    skip = {"self", "obj", "path", "path_or_buf", "filepath_or_buffer", "fp", "file", "s", "excel_writer"}
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) - skip
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


class Pickle(Format):
    name, ext = "pickle", "pkl"
    loads_up_to = 1 << 20  # larger: read from the file, not held twice (bytes and objects)

    def _reader_signature(self) -> Callable[..., Any]:
        return pickle.load

    def _writer_signature(self) -> Callable[..., Any]:
        return pickle.dump

    def _loads(self, data: bytes, path: str, **options: Any) -> Any:
        return pickle.loads(data, **options)

    def _read_open(self, f: BinaryIO, path: str, **options: Any) -> Any:
        return pickle.load(f, **options)

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        options.setdefault("protocol", pickle.HIGHEST_PROTOCOL)
        with open(path, "wb") as f:
            pickle.dump(obj, f, **options)


class _PandasFormat(Format):
    """A DataFrame format read by ``pandas.<reader>`` and written by ``DataFrame.<writer>``."""

    accepts = "a pandas DataFrame"

    reader: str = ""
    writer: str = ""
    backend: str | None = None  # the package pandas needs for this format
    read_defaults: dict[str, Any] = {}
    write_defaults: dict[str, Any] = {}

    def check(self, obj: Any) -> bool:
        return is_dataframe(obj)

    def _pandas(self) -> Any:
        pd = require("pandas", None, f"{self.name} output")
        if self.backend:
            require(self.backend, self.extra, f"{self.name} output")
        return pd

    def _reader_signature(self) -> Callable[..., Any]:
        return getattr(require("pandas", None, f"{self.name} output"), self.reader)

    def _writer_signature(self) -> Callable[..., Any]:
        return getattr(require("pandas", None, f"{self.name} output").DataFrame, self.writer)

    def _read(self, path: str, **options: Any) -> Any:
        return getattr(self._pandas(), self.reader)(path, **{**self.read_defaults, **options})

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        self._pandas()
        getattr(obj, self.writer)(path, **{**self.write_defaults, **options})


class CSV(_PandasFormat):
    name = ext = "csv"
    reader, writer = "read_csv", "to_csv"
    write_defaults = {"index": False}


class Parquet(_PandasFormat):
    name = ext = "parquet"
    reader, writer, backend = "read_parquet", "to_parquet", "pyarrow"
    read_defaults = write_defaults = {"engine": "pyarrow"}
    embeds = True
    reads_folders = True

    def _write_with(self, obj: Any, path: str, provenance: str, **options: Any) -> None:
        # pyarrow keeps the key-value metadata of a schema given to it beside pandas' own; the
        # schema is the one pandas would infer.
        import pyarrow as pa

        options = {**self.write_defaults, **options}
        # A schema given to pandas must name the columns as the frame does: only str names can
        # (pyarrow turns others into str, and pandas then cannot find them). Such a frame is
        # written without the metadata; its fingerprint record still says where it came from.
        named_by_str = all(isinstance(name, str) for name in obj.columns)
        if options.get("engine") not in ("pyarrow", "auto") or not named_by_str:
            return self._write(obj, path, **options)
        schema = options.get("schema") or pa.Schema.from_pandas(obj, preserve_index=options.get("index"))
        options["schema"] = schema.with_metadata({**(schema.metadata or {}), PROVENANCE_KEY.encode(): provenance})
        return self._write(obj, path, **options)


class Feather(_PandasFormat):
    name = ext = "feather"
    reader, writer, backend = "read_feather", "to_feather", "pyarrow"


class XLSX(_PandasFormat):
    name = ext = "xlsx"
    extra = "excel"
    reader, writer, backend = "read_excel", "to_excel", "openpyxl"
    read_defaults = {"engine": "openpyxl"}
    write_defaults = {"engine": "openpyxl", "index": False}


class HDF(_PandasFormat):
    name = ext = extra = "hdf"
    reader, writer, backend = "read_hdf", "to_hdf", "tables"
    read_defaults = write_defaults = {"key": "data"}
    embeds = True

    def _write_with(self, obj: Any, path: str, provenance: str, **options: Any) -> None:
        self._write(obj, path, **options)
        import tables

        with tables.open_file(path, "a") as f:  # a root attribute: pandas reads only its keys
            f.root._v_attrs[PROVENANCE_KEY] = provenance


class JSON(Format):
    name, ext = "json", "json"
    accepts = "a dict or a list"
    loads_up_to, loads_text = sys.maxsize, True  # json.load reads the whole file too

    def check(self, obj: Any) -> bool:
        return isinstance(obj, (dict, list))

    # json.load/dump pass **kw on to the decoder/encoder; these are the keywords those accept.
    def _reader_signature(self) -> Callable[..., Any]:
        def load(*, cls=None, object_hook=None, parse_float=None, parse_int=None, parse_constant=None,
                 object_pairs_hook=None) -> None: ...

        return load

    def _writer_signature(self) -> Callable[..., Any]:
        def dump(*, skipkeys=False, ensure_ascii=True, check_circular=True, allow_nan=True, cls=None,
                 indent=None, separators=None, default=None, sort_keys=False) -> None: ...

        return dump

    def _loads(self, data: str, path: str, **options: Any) -> Any:
        return json.loads(data, **options)

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, **options)


class H5(Format):
    """An ndarray, or a nested dict whose keys become groups and datasets.

    ``attrs`` (the task's parameters, given by the target) are stored on the root group.
    """

    name, ext, extra = "h5", "h5", "h5"
    accepts = "a numpy array or a nested dict of arrays and scalars"
    _ROOT_ARRAY = "data"

    def check(self, obj: Any) -> bool:
        return is_ndarray(obj) or (isinstance(obj, Mapping) and _h5_tree_ok(obj))

    def _writer_signature(self) -> Callable[..., Any]:
        def write(obj: Any, path: str, attrs: Mapping[str, Any] | None = None) -> None: ...

        return write

    def _read(self, path: str, **options: Any) -> Any:
        h5py = require("h5py", self.extra, "h5 output")
        with h5py.File(path, "r") as f:
            if f.attrs.get("luisy_type") == "ndarray":
                return f[self._ROOT_ARRAY][()]
            return _h5_read_group(f)

    embeds = True

    def _write_with(self, obj: Any, path: str, provenance: str, **options: Any) -> None:
        self._write(obj, path, attrs={**(options.get("attrs") or {}), PROVENANCE_KEY: provenance})

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        h5py = require("h5py", self.extra, "h5 output")
        attrs: Mapping[str, Any] = options.get("attrs") or {}
        with h5py.File(path, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value if isinstance(value, _SCALARS) else str(value)
            if is_ndarray(obj):
                f.attrs["luisy_type"] = "ndarray"
                f.create_dataset(self._ROOT_ARRAY, data=obj)
            else:
                f.attrs["luisy_type"] = "dict"
                _h5_write_group(f, obj)

    @staticmethod
    def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The attributes of the file's root group (the writing task's parameters); luisy's
        provenance is left out (:func:`luisy.history.provenance.read_embedded` reads it)."""
        h5py = require("h5py", "h5", "h5 output")
        with h5py.File(path, "r") as f:
            return {k: _h5_plain(v) for k, v in f.attrs.items() if k not in ("luisy_type", PROVENANCE_KEY)}


def _h5_tree_ok(tree: Mapping[Any, Any]) -> bool:
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key or not key:
            return False
        if isinstance(value, Mapping):
            if not _h5_tree_ok(value):
                return False
        elif not (is_ndarray(value) or isinstance(value, (*_SCALARS, list, tuple)) or _is_np_scalar(value)):
            return False
    return True


def _is_np_scalar(value: Any) -> bool:
    generic = _loaded_type("numpy", "generic")
    return generic is not None and isinstance(value, generic)


def _h5_write_group(group: Any, tree: Mapping[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _h5_write_group(group.create_group(key), value)
        else:
            group.create_dataset(key, data=value)


def _h5_read_group(group: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in group.items():
        if hasattr(item, "keys"):
            out[key] = _h5_read_group(item)
        elif item.dtype.kind in "OSU" and item.shape == ():
            out[key] = item.asstr()[()] if item.dtype.kind != "U" else item[()]
        else:
            out[key] = _h5_plain(item[()])
    return out


def _h5_plain(value: Any) -> Any:
    """numpy scalars back to Python scalars; arrays stay arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if _is_np_scalar(value) else value


class Npy(Format):
    name, ext = "npy", "npy"
    accepts = "a numpy array"

    def check(self, obj: Any) -> bool:
        return is_ndarray(obj)

    def _read_open(self, f: BinaryIO, path: str, **options: Any) -> Any:
        return require("numpy", None, "npy output").load(f, allow_pickle=False)

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        np = require("numpy", None, "npy output")
        with open(path, "wb") as f:  # a file object, so numpy does not append ".npy" to the name
            np.save(f, obj, allow_pickle=False)


class Text(Format):
    name, ext = "text", "txt"
    accepts = "a str"
    loads_up_to, loads_text = sys.maxsize, True

    def check(self, obj: Any) -> bool:
        return isinstance(obj, str)

    def _loads(self, data: str, path: str, **options: Any) -> Any:
        return data

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(obj)


class Image(Format):
    """Images through scikit-image (read by extension; writable as png/tif)."""

    name, extra = "image", "image"
    accepts = "a numpy array"

    def __init__(self, ext: str = "png") -> None:
        self.ext = ext

    def check(self, obj: Any) -> bool:
        return is_ndarray(obj)

    def _read(self, path: str, **options: Any) -> Any:
        if self.ext in _PILLOW_FAST:
            array = _read_with_pillow(path)
            if array is not None:
                return array
        return require("skimage.io", self.extra, f"reading .{self.ext} images").imread(path)

    def _write(self, obj: Any, path: str, **options: Any) -> None:
        skimage_io = require("skimage.io", self.extra, f"writing .{self.ext} images")
        skimage_io.imsave(path, obj, check_contrast=False)


_PILLOW_FAST = frozenset({"png", "jpg", "jpeg", "bmp"})
# Pillow modes whose pixels scikit-image returns unconverted (np.asarray of the image).
_PILLOW_PLAIN_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def _read_with_pillow(path: str) -> Any:
    """The array scikit-image would return, read with Pillow directly; ``None`` if the image needs
    scikit-image's conversions (palettes, 16 bit, several frames).

    scikit-image reads these formats through imageio's Pillow plugin, whose per-call set-up costs
    three times the decoding of a small image; a folder of thousands of thumbnails feels that.
    """
    try:
        from PIL import Image as PILImage
    except ImportError:
        return None
    np = require("numpy", None, "reading images")
    with PILImage.open(path) as image:
        if image.mode not in _PILLOW_PLAIN_MODES or getattr(image, "n_frames", 1) != 1:
            return None
        return np.array(image)


PICKLE, CSV_, PARQUET, FEATHER, JSON_, XLSX_, HDF_, H5_, NPY, TEXT = (
    Pickle(), CSV(), Parquet(), Feather(), JSON(), XLSX(), HDF(), H5(), Npy(), Text()
)

#: Formats by file extension, for reading external folders.
BY_EXTENSION: dict[str, Format] = {
    f.ext: f for f in (PICKLE, CSV_, PARQUET, FEATHER, JSON_, XLSX_, HDF_, H5_, NPY, TEXT)
}
BY_EXTENSION.update({ext: Image(ext) for ext in ("png", "jpg", "jpeg", "tif", "tiff", "bmp")})


def for_path(path: str | os.PathLike[str]) -> Format:
    """The format that reads ``path``, chosen by its extension."""
    ext = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    try:
        return BY_EXTENSION[ext]
    except KeyError:
        known = ", ".join(f".{e}" for e in sorted(BY_EXTENSION))
        raise ValueError(f"no reader for {os.fspath(path)!r}: unknown extension (known: {known})") from None
