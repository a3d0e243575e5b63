"""FID of generators on the eval split (placeholder until ganc.metrics lands)."""
