"""Tasks: item loaders (local JSONL/parquet, HF datasets) and the task plugins built on them."""
