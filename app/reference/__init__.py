"""The reference endpoint: a small OpenAI-compatible model server with selectable behaviour."""
