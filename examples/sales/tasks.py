"""The sales pipeline.

raw/         RawExport(region)      semicolon-separated csv exports (external data)
interim/     CleanSales(region)     returns dropped, revenue computed (parquet)
interim/     AllSales               all regions in one table (ConcatenationTask, parquet)
final/       SalesReport            revenue per region and product (xlsx) + headline numbers (json)
"""

from __future__ import annotations

import luisy

REGIONS = ("north", "south", "east", "west")


@luisy.project_name("sales")
@luisy.raw
@luisy.csv_output(sep=";")
class RawExport(luisy.ExternalTask):
    region = luisy.Parameter()

    def get_file_name(self) -> str:
        return f"export_{self.region}"


@luisy.project_name("sales")
@luisy.interim
@luisy.requires(RawExport)
@luisy.parquet_output
class CleanSales(luisy.Task):
    def run(self) -> None:
        df = self.read_input()
        df = df[df["units"] > 0].copy()
        df["region"] = self.region
        df["revenue"] = df["units"] * df["unit_price"]
        self.write(df)


@luisy.project_name("sales")
@luisy.interim
@luisy.parquet_output
class AllSales(luisy.ConcatenationTask):
    regions = luisy.ListParameter(default=list(REGIONS))

    def requires(self) -> list[CleanSales]:
        return [CleanSales(region=r) for r in self.regions]


@luisy.project_name("sales")
@luisy.final
@luisy.requires(AllSales)
@luisy.json_output(indent=2)
class SalesReport(luisy.Task):
    """Headline numbers; the full table goes to RevenueTable."""

    def run(self) -> None:
        df = self.read_input()
        by_region = df.groupby("region")["revenue"].sum().round(2)
        self.write({
            "rows": int(len(df)),
            "total_revenue": round(float(df["revenue"].sum()), 2),
            "revenue_by_region": {k: float(v) for k, v in by_region.items()},
            "best_product": str(df.groupby("product")["revenue"].sum().idxmax()),
        })


@luisy.project_name("sales")
@luisy.final
@luisy.requires(AllSales)
@luisy.xlsx_output
class RevenueTable(luisy.Task):
    def run(self) -> None:
        df = self.read_input()
        table = df.pivot_table(index="product", columns="region", values="revenue", aggfunc="sum")
        self.write(table.round(2).reset_index())


@luisy.project_name("sales")
class Everything(luisy.WrapperTask):
    """The final outputs of the example."""

    def requires(self) -> dict[str, luisy.Task]:
        return {"report": SalesReport(), "table": RevenueTable()}
