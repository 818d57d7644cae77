"""The operator console: pages served by the agent, cookie sessions, live view, review, search."""
