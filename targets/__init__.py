"""Package data (shipped with cai-dsl)."""
