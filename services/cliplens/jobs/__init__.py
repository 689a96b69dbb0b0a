"""Batch jobs and other ``cliplens`` CLI commands."""
