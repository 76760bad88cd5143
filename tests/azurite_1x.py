"""Pointing luisy 1.4.7's Azure cloud sync at a local Azurite (tests only).

luisy 1.x builds its client as ``BlobServiceClient("https://<account>.blob.core.windows.net",
credential=<key>)`` and offers no endpoint or connection-string setting. A run is pointed at
Azurite by a ``sitecustomize.py`` placed in the project (the project folder is first on the run's
``PYTHONPATH``, see ``luisy1.py``): when ``LUISY_TEST_AZURITE_BLOB_ENDPOINT`` is set, it wraps the
constructors of azure-storage-blob's three clients so that a ``*.blob.core.windows.net`` account URL
becomes ``<endpoint>/<account>`` (Azurite's path-style URL), and it refuses any URL that is not on
loopback, so a test never reaches Azure. luisy 1.x's own code is not touched.

luisy 2 needs no hook: the endpoint of ``AZURE_STORAGE_CONNECTION_STRING`` is used with 1.x's
account and key (see :func:`luisy.config.resolve_remote`).
"""

from __future__ import annotations

from object_stores import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteBlob

ENDPOINT_VARIABLE = "LUISY_TEST_AZURITE_BLOB_ENDPOINT"

# Written into a project as sitecustomize.py; imported at the start of every Python process of the run.
HOOK = '''\
"""Test-only: azure-storage-blob clients made for https://<account>.blob.core.windows.net go to Azurite."""
import os
import urllib.parse

_ENDPOINT = os.environ.get("LUISY_TEST_AZURITE_BLOB_ENDPOINT")


def _local(url):
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host.endswith(".blob.core.windows.net"):
        url = _ENDPOINT.rstrip("/") + "/" + host.split(".")[0] + parts.path + ("?" + parts.query if parts.query else "")
    if urllib.parse.urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError("a test run may reach only the local Azurite, not " + url)
    return url


def _redirect(cls):
    original = cls.__init__

    def __init__(self, account_url, *args, **kwargs):
        original(self, _local(account_url), *args, **kwargs)

    cls.__init__ = __init__


if _ENDPOINT:
    try:
        from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
    except ImportError:  # an interpreter without the SDK has nothing to redirect
        pass
    else:
        for _cls in (BlobServiceClient, ContainerClient, BlobClient):
            _redirect(_cls)
'''


def settings_1x(azurite: AzuriteBlob, container: str, key: str | None = None) -> dict[str, str]:
    """luisy 1.x's three cloud settings for ``container`` of Azurite's account (another ``key`` if
    given), the hook's endpoint for 1.x, and the connection string whose endpoint luisy 2 uses."""
    return {"LUISY_AZURE_ACCOUNT_NAME": AZURITE_ACCOUNT, "LUISY_AZURE_STORAGE_KEY": key or AZURITE_KEY,
            "LUISY_AZURE_CONTAINER_NAME": container, ENDPOINT_VARIABLE: azurite.url, **azurite.env}
