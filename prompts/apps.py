from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "prompts"
    verbose_name = "Prompt registry"

    def ready(self) -> None:
        from tenancy.models import Role, Scope
        from tenancy.permissions import ADD, CHANGE, VIEW, grant

        from . import signals  # noqa: F401  (drop the proxy's cached prompts on a change)
        from .models import Label, Namespace, Prompt, PromptVersion

        # Everyone reads; members and up create prompts and versions (label moves: prompts/permissions.py).
        for model in (Namespace, Prompt, PromptVersion, Label):
            grant(
                model,
                roles={
                    Role.VIEWER: {VIEW},
                    Role.MEMBER: {VIEW, ADD, CHANGE},
                    Role.ADMIN: {VIEW, ADD, CHANGE},
                    Role.OWNER: {VIEW, ADD, CHANGE},
                },
                scopes={Scope.PROMPTS_READ: {VIEW}, Scope.PROMPTS_WRITE: {VIEW, ADD, CHANGE}},
                org_path="prompt__org" if model in (PromptVersion, Label) else "org",
            )
