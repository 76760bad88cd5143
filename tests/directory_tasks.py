"""Tasks, fixtures and helpers shared by the directory-task tests (a module of its own, not a test module)."""

from __future__ import annotations

import luigi

import luisy
from luisy.directory import MANIFEST_NAME

PROCESSED: list[str] = []


@luisy.project_name("dirs")
@luisy.raw
@luisy.directory_input(pattern="*.npy")
class Frames(luisy.ExternalTask):
    def get_folder_name(self):
        return "frames"


@luisy.project_name("dirs")
@luisy.interim
@luisy.requires(Frames)
@luisy.directory_output(format="npy")
class Doubled(luisy.DirectoryTask):
    def process(self, name, obj):
        PROCESSED.append(name)
        if obj.size == 0:
            return None
        if obj.dtype.kind == "U":
            raise ValueError("text is not a frame")
        return obj * 2


@luisy.project_name("dirs")
@luisy.final
@luisy.requires(Doubled)
@luisy.directory_output(format="json")
class Summed(luisy.DirectoryTask):
    def process(self, name, obj):
        return {"name": name, "sum": int(obj.sum())}


def _build(*tasks, ok=True):
    assert luigi.build(list(tasks), local_scheduler=True, log_level="ERROR") is ok


def files_on_disk(folder):
    """Every file below ``folder``, as a relative POSIX path."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def files_of(manifest):
    """The files a manifest accounts for: itself, its items, and replaced files kept for readers."""
    return {MANIFEST_NAME, *manifest.items.files, *(f".luisy-retired/{f}" for f in manifest.retired)}
