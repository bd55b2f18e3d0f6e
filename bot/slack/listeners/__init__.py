"""Slack listeners grouped by kind; ``register(app)`` wires them all."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events


def register(app: AsyncApp) -> None:
    commands.register(app)
    events.register(app)
    actions.register(app)
