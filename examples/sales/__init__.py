"""Monthly sales exports per region → cleaned tables → one table → a final report."""
