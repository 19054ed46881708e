"""Foundations every other floor stands on: errors, subprocesses, output, configuration."""
