"""Ollama stand-in: a test fixture imitating the ``ollama`` binary and server. Never shipped.

Entry point: the executable ``ollama`` next to this file. See README.md.
"""
