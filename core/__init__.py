"""MaGNeTS Studio core: data, tokenizer, nested transformer, decoding and metrics (no UI code)."""
