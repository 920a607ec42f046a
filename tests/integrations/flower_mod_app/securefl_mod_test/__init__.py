"""Flower app of the securefl_mod + SecureAggregation deployment test."""
