"""Connectors: one module per platform, the contract they follow, and the one HTTP module."""
