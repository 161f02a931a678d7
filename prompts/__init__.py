"""Prompt registry: namespaces, versioned prompts and environment labels."""
