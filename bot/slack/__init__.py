"""mixwith on Slack (Bolt for Python, asyncio): app factory, listeners, Block Kit."""
