from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evals"

    def ready(self) -> None:
        from .background import BackgroundRuns

        # Runs in this process when there is no Celery worker (the embedded mode): see tasks.queue_run.
        self.background = BackgroundRuns()

        from tenancy.models import Role, Scope
        from tenancy.permissions import ADD, CHANGE, VIEW, grant

        from .models import Dataset, DatasetItem, DatasetVersion, EvalResult, EvalRun, EvalTarget

        # Everyone reads; members and up change datasets and queue or cancel runs. Keys: `evals:run`.
        paths = {
            DatasetVersion: "dataset__org",
            DatasetItem: "version__dataset__org",
            EvalTarget: "run__org",
            EvalResult: "run__org",
        }
        for model in (Dataset, DatasetVersion, DatasetItem, EvalRun, EvalTarget, EvalResult):
            grant(
                model,
                roles={
                    Role.VIEWER: {VIEW},
                    Role.MEMBER: {VIEW, ADD, CHANGE},
                    Role.ADMIN: {VIEW, ADD, CHANGE},
                    Role.OWNER: {VIEW, ADD, CHANGE},
                },
                scopes={Scope.EVALS_RUN: {VIEW, ADD, CHANGE}},
                org_path=paths.get(model, "org"),
            )
