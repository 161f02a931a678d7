"""The provider registry: every provider Ingate knows, as data."""

# OpenAI-compatible providers reachable by `X-Ingate-Provider: <name>` or `/p/<name>/…`:
# name -> default upstream base URL (the part before `/chat/completions`).
COMPATIBLE_PROVIDERS: dict[str, str] = {
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "perplexity": "https://api.perplexity.ai",
}

BUILTIN_PROVIDERS = ("openai", "anthropic", "azure", "gemini", "ollama")
PROVIDER_NAMES = frozenset(BUILTIN_PROVIDERS) | frozenset(COMPATIBLE_PROVIDERS)
