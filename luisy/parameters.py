"""luigi's parameter classes, re-exported so ``luisy.IntParameter`` is ``luigi.IntParameter``, and
the one definition of which parameter values an output depends on.

The list follows the installed luigi, so new parameter classes appear without a luisy release.
"""

from __future__ import annotations

from collections.abc import Mapping

import luigi

__all__ = sorted(name for name in dir(luigi) if name.endswith("Parameter"))
globals().update({name: getattr(luigi, name) for name in __all__})


def significant_params(task: luigi.Task) -> dict[str, str]:
    """The values an output depends on: the significant parameters as strings, sorted by name.

    Made once per instance (like luigi's task id); parameters with ``significant=False`` change
    neither the output's name nor whether it is complete.
    """
    params = task.__dict__.get("_luisy_significant")
    if params is None:
        params = {k: str(v) for k, v in sorted(task.to_str_params(only_significant=True).items())}
        task.__dict__["_luisy_significant"] = params
    return dict(params)


def recorded_params(recorded: Mapping[str, str], task: luigi.Task) -> dict[str, str]:
    """The parameter values recorded with an output of ``task``, less those of parameters that are
    not significant (outputs written before luisy 2.0 recorded them all)."""
    insignificant = {name for name, param in type(task).get_params() if not param.significant}
    return {k: v for k, v in recorded.items() if k not in insignificant}
