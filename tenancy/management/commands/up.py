"""`manage.py up`: migrate, bootstrap a demo tenant on first start, print how to use it, and serve."""

import os
import shlex
import shutil
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from .bootstrap import DEMO_KEY_SCOPES, bootstrap_instance

BANNER = """
  Ingate is starting.

  Base URL        {base}
  Dashboard       {base}/ingate/  (sign in as the admin below)
  Admin           {base}/admin/   {login}
  API docs        {base}/ingate/api/docs/
  Health          {base}/ingate/health
  Gateway key     {key}

  In your shell (the README's examples read these){export_note}:
    export INGATE_URL={base} INGATE_KEY={key_value}

  Try it:
{example}
{credential_note}
  Point an SDK or agent at it (the gateway key replaces your provider key):
    OPENAI_BASE_URL={base}/v1  OPENAI_API_KEY={key_or_var}
    ANTHROPIC_BASE_URL={base}  ANTHROPIC_API_KEY={key_or_var}
"""

# One request per provider, in the provider's own shape; the banner shows the first one configured.
EXAMPLES = {
    "openai": (
        "    curl -s {base}/v1/chat/completions -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\\n"
        '      -d \'{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}\''
    ),
    "anthropic": (
        "    curl -s {base}/v1/messages -H \"x-api-key: {key}\" -H 'anthropic-version: 2023-06-01' "
        "-H 'Content-Type: application/json' \\\n"
        '      -d \'{{"model": "claude-haiku-4-5", "max_tokens": 256, '
        '"messages": [{{"role": "user", "content": "Hello"}}]}}\''
    ),
    "gemini": (
        '    curl -s {base}/v1beta/models/gemini-2.5-flash:generateContent -H "x-goog-api-key: {key}" '
        "-H 'Content-Type: application/json' \\\n"
        '      -d \'{{"contents": [{{"parts": [{{"text": "Hello"}}]}}]}}\''
    ),
}


def _example(base: str, key: str) -> tuple[str, str]:
    """The curl for the first provider with an instance credential, and a note when there is none."""
    configured = [name for name in EXAMPLES if settings.INGATE_PROVIDER_ENV[name]["api_key"]]
    provider = configured[0] if configured else "openai"
    note = (
        ""
        if configured
        else (
            "    (No provider key is configured yet: set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY before\n"
            "     starting, or add a provider credential to the demo organization in the admin.)\n"
        )
    )
    return EXAMPLES[provider].format(base=base, key=key), note


def _manage_command() -> str:
    """manage.py as this process ran it, from the directory it was started in, ready to paste."""

    def shown(path) -> str:
        relative = os.path.relpath(path)
        return shlex.quote(path if relative.startswith("..") else relative)

    return f"{shown(sys.executable)} {shown(str(settings.BASE_DIR / 'manage.py'))}"


class Command(BaseCommand):
    help = "Start the gateway: migrate, create a demo tenant on first start, print a key, and serve."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
        parser.add_argument("--no-serve", action="store_true", help="Set up and print, but do not start a server.")

    def handle(self, *args, host, port, server, no_serve, **options):
        call_command("migrate", interactive=False, verbosity=0)
        created = bootstrap_instance()
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = settings.INGATE_PUBLIC_URL.rstrip("/") or f"http://{shown_host}:{port}"
        if created:
            login = f"user {created['admin'].get_username()}"
            if created["password"]:
                login += f" / password {created['password']}"
            key = key_value = key_or_var = created["plaintext"]
            login += "  (shown once: write it down)"
            export_note = ""
        else:
            # The first key's secret was never stored: these lines use a variable the export line defines.
            login = "(your existing admin user)"
            key = "(shown on first start only)"
            scopes = " ".join(DEMO_KEY_SCOPES)
            key_value = f"$({_manage_command()} create_gateway_key --org demo --app demo-app --scopes {scopes})"
            key_or_var = "$INGATE_KEY"
            export_note = "; this makes a new key, or use the one you kept"
        example, note = _example(base, key_or_var)
        self.stdout.write(
            BANNER.format(
                base=base,
                login=login,
                key=key,
                key_value=key_value,
                key_or_var=key_or_var,
                export_note=export_note,
                example=example,
                credential_note=note,
            )
        )
        sys.stdout.flush()
        if no_serve:
            return
        if server == "daphne":
            daphne = shutil.which("daphne", path=os.path.dirname(sys.executable)) or shutil.which("daphne")
            if daphne is None:
                raise CommandError("daphne is not installed in this environment.")
            os.execv(daphne, [daphne, "-b", host, "-p", str(port), "ingate.asgi:application"])
        import uvicorn

        uvicorn.run(
            "ingate.asgi:application",
            host=host,
            port=port,
            lifespan="auto",
            access_log=False,
            log_level="warning",
            server_header=False,
            proxy_headers=False,  # Django reads X-Forwarded-* itself, and only with INGATE_BEHIND_PROXY
            date_header=False,  # the upstream's Date header is relayed; a second one would confuse clients
        )
