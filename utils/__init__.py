"""Shared helpers for the LLM course notebooks: profiles, data, smoke assets, models and reporting."""
