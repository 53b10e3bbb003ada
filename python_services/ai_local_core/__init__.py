"""ai-local-core: Python inference services for a private Ollama node."""

__version__ = "0.1.0"
