"""What the concepts and compatibility pages say about ConcatenationTask and parquetdir_output is
what the code does."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

import luisy

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _bullet(page: str, starts: str) -> str:
    """The text of the bullet of ``docs/<page>`` that starts with ``starts``, on one line."""
    text = (DOCS / page).read_text()
    found = re.search(rf"^\* {re.escape(starts)}.*?(?=^\* |^\S|\Z)", text, re.S | re.M)
    assert found, f"{page} has no bullet starting with {starts!r}"
    return " ".join(found.group(0).split())


def _parts(luisy_working_dir):
    @luisy.project_name("doc")
    @luisy.raw
    class Part(luisy.ExternalTask):
        n = luisy.IntParameter()

    for n in (0, 1):
        Part(n=n).output().write(pd.DataFrame({"v": [10 * n, 10 * n + 1]}))
    return Part


def test_concatenation_task_keeps_each_frames_index_as_the_concepts_page_says(luisy_working_dir):
    part = _parts(luisy_working_dir)

    @luisy.project_name("doc")
    class Kept(luisy.ConcatenationTask):
        def requires(self):
            return [part(n=0), part(n=1)]

    @luisy.project_name("doc")
    class Fresh(Kept):
        def preprocess(self, df):
            return df.reset_index(drop=True)

    assert luisy.build([Kept(), Fresh()])
    assert Kept().read().index.tolist() == [0, 1, 0, 1]
    assert Fresh().read().index.tolist() == [0, 1, 2, 3]
    said = _bullet("concepts.rst", "``luisy.ConcatenationTask``")
    assert "keeping each frame's own index" in said and "df.reset_index(drop=True)" in said
    assert "ignore_index" not in said


def test_parquetdir_output_reads_sub_folders_in_path_order_as_the_compatibility_page_lists(luisy_working_dir):
    @luisy.project_name("doc")
    @luisy.interim
    @luisy.parquetdir_output
    class Spark(luisy.ExternalTask):
        def get_folder_name(self):
            return "written_by_spark"

    folder = luisy_working_dir / "doc" / "interim" / "written_by_spark"
    for rel, v in (("year=2025/part-0.parquet", 3), ("part-1.parquet", 2), ("year=2024/part-0.parquet", 4),
                   ("part-0.parquet", 1), ("_temporary/part-9.parquet", 0), (".hidden/part-9.parquet", 0)):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"v": [v]}).to_parquet(folder / rel)
    assert Spark().read()["v"].tolist() == [1, 2, 4, 3]
    assert "year" not in Spark().read().columns
    said = _bullet("compat.rst", "``parquetdir_output``")
    for claim in ("sub-folders", "do not become columns", "hidden and ``_``-prefixed", "path order",
                  "empty folder reads as an empty DataFrame"):
        assert claim in said, claim
    shutil.rmtree(folder)
    folder.mkdir()
    assert Spark().read().empty
