"""Moorage tasks for this project. Run `inv --list`; configuration is in invoke.yaml."""

from pathlib import Path

from moorage.tasks import namespace

ns = namespace(Path(__file__).resolve().parent)
