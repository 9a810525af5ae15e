"""Cross-domain datasets: records, providers, filters and splits."""
