"""Flower app of the securefl deployment test."""
