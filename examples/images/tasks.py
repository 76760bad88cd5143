"""Microscopy-style image pipeline: a folder of PNGs → per-image features → a table and an HDF5 stack.

    raw/images/*.png        RawImages      (the input folder, read with scikit-image)
    interim/Segmented_*/    Segmented      (DirectoryTask: one pickle per image)
    final/FeatureTable_*.parquet           (one row per image)
    final/ImageStack_*.h5                  (the masks stacked; the parameters as attributes)

Run it with ``luisy run examples.images.tasks:Everything`` after
``python -m examples.images.make_data``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import luisy

PROJECT = "images"


@luisy.project_name(PROJECT)
@luisy.raw
@luisy.directory_input(pattern="*.png")
class RawImages(luisy.ExternalTask):
    """The PNG files of ``raw/images``."""

    def get_folder_name(self) -> str:
        return "images"


@luisy.project_name(PROJECT)
@luisy.interim
@luisy.requires(RawImages)
@luisy.directory_output(format="pkl")
class Segmented(luisy.DirectoryTask):
    """Per image: grayscale, smooth, threshold (Otsu's), label the blobs and measure them."""

    sigma = luisy.FloatParameter(default=1.0)
    min_area = luisy.IntParameter(default=4)

    def process(self, name: str, obj: Any) -> dict[str, Any]:
        from skimage import color, filters, measure

        gray = color.rgb2gray(obj[..., :3]) if obj.ndim == 3 else obj / np.iinfo(obj.dtype).max
        smooth = filters.gaussian(gray, sigma=self.sigma)
        labels = measure.label(smooth > filters.threshold_otsu(smooth))
        regions = [r for r in measure.regionprops(labels, intensity_image=gray) if r.area >= self.min_area]
        mask = np.isin(labels, [r.label for r in regions])
        return {
            "mask": mask,
            "features": {
                "image": name,
                "blobs": len(regions),
                "area_fraction": float(mask.mean()),
                "mean_intensity": float(gray.mean()),
                "largest_blob": int(max((r.area for r in regions), default=0)),
                "mean_eccentricity": float(np.mean([r.eccentricity for r in regions])) if regions else 0.0,
            },
        }


@luisy.project_name(PROJECT)
@luisy.final
@luisy.requires(Segmented)
@luisy.parquet_output
class FeatureTable(luisy.Task):
    """One row of features per image."""

    def run(self) -> None:
        import pandas as pd

        self.write(pd.DataFrame([result["features"] for result in self.input().read()]))


@luisy.project_name(PROJECT)
@luisy.final
@luisy.requires(Segmented)
@luisy.h5_output
class ImageStack(luisy.Task):
    """The masks as one ``(n, height, width)`` array, with the image names; parameters become attributes."""

    def run(self) -> None:
        items = dict(self.input().items())
        self.write({"names": np.array(list(items), dtype="S"), "masks": np.stack([r["mask"] for r in items.values()])})


@luisy.project_name(PROJECT)
@luisy.final
@luisy.requires(Segmented)
@luisy.json_output
class Statistics(luisy.ReduceTask):
    """Images, blobs and the mean area fraction, kept up to date item by item: a rerun folds in
    only new and changed images (and takes changed and removed ones back out)."""

    def initial(self) -> dict[str, Any]:
        return {"images": 0, "blobs": 0, "area_fraction_sum": 0.0}

    def fold(self, state: dict[str, Any], name: str, item: dict[str, Any]) -> dict[str, Any]:
        return self._add(state, item["features"], 1)

    def unfold(self, state: dict[str, Any], name: str, item: dict[str, Any]) -> dict[str, Any]:
        return self._add(state, item["features"], -1)

    def finish(self, state: dict[str, Any]) -> dict[str, Any]:
        images = state["images"]
        return {"images": images, "blobs": state["blobs"],
                "mean_area_fraction": state["area_fraction_sum"] / images if images else None}

    @staticmethod
    def _add(state: dict[str, Any], features: dict[str, Any], sign: int) -> dict[str, Any]:
        return {"images": state["images"] + sign, "blobs": state["blobs"] + sign * features["blobs"],
                "area_fraction_sum": state["area_fraction_sum"] + sign * features["area_fraction"]}


class Everything(luisy.WrapperTask):
    """The table, the stack and the statistics."""

    sigma = luisy.FloatParameter(default=1.0)
    min_area = luisy.IntParameter(default=4)

    def requires(self) -> list[luisy.Task]:
        return [FeatureTable(sigma=self.sigma, min_area=self.min_area),
                ImageStack(sigma=self.sigma, min_area=self.min_area),
                Statistics(sigma=self.sigma, min_area=self.min_area)]
