"""Organizations, teams, apps, memberships and roles, gateway keys, provider credentials, audit log."""
