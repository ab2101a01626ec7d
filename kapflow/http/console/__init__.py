"""The practice console: server-rendered pages over the engine."""
