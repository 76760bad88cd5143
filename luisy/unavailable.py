"""The luisy 1.x features luisy 2 does not have: Spark, Delta tables, and the Spark-based Azure Blob
targets. Wherever 1.x code reaches them they fail with one line that says what to do instead.
"""

from __future__ import annotations

from luisy.errors import UnavailableFeatureError

__all__ = ["UNAVAILABLE", "missing", "unavailable"]

_CLOUD = ("luisy 1.x's Azure Blob Storage targets ({name}) read and wrote through Spark, which is not part of "
          "luisy 2; keep the working directory in the container (--working-dir az://container/prefix), or share "
          "outputs with it (luisy run --upload / --download)")
_SPARK = "luisy 1.x's Spark support ({name}) is not part of luisy 2; read and write the table in run() with pyspark"

#: 1.x names luisy 2 does not provide, and what to say instead.
UNAVAILABLE = {
    "azure_blob_storage_input": _CLOUD.format(name="azure_blob_storage_input"),
    "azure_blob_storage_output": _CLOUD.format(name="azure_blob_storage_output"),
    "AzureBlobStorageTarget": _CLOUD.format(name="AzureBlobStorageTarget"),
    "CloudTarget": _CLOUD.format(name="CloudTarget"),
    "SparkTask": _SPARK.format(name="SparkTask"),
    "SparkTarget": _SPARK.format(name="SparkTarget"),
    "deltatable_input": _SPARK.format(name="deltatable_input"),
    "deltatable_output": _SPARK.format(name="deltatable_output"),
    "DeltaTableTarget": _SPARK.format(name="DeltaTableTarget"),
}


def unavailable(name: str) -> UnavailableFeatureError:
    """The error for the 1.x feature ``name``."""
    return UnavailableFeatureError(UNAVAILABLE[name])


def missing(module: str, name: str) -> Exception:
    """For a module's ``__getattr__``: the one-line error if ``name`` is a 1.x feature luisy 2 does
    not have, else the usual ``AttributeError``."""
    if name in UNAVAILABLE:
        return unavailable(name)
    return AttributeError(f"module {module!r} has no attribute {name!r}")
