"""luigi's parameter classes, re-exported so ``luisy.IntParameter`` is ``luigi.IntParameter``.

The list follows the installed luigi, so new parameter classes appear without a luisy release.
"""

from __future__ import annotations

import luigi

__all__ = sorted(name for name in dir(luigi) if name.endswith("Parameter"))
globals().update({name: getattr(luigi, name) for name in __all__})
