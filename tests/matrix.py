"""The API's permission matrix, declared: for each endpoint and action, which roles and which gateway-key scopes
may do it; every principal is then checked against objects of its own org and of another org.

The expectations are written out by hand from the documented rules (README "Roles and keys", docs/security.md,
each app's `grant()` in its AppConfig), never read from `tenancy.permissions`, so a change that widens or
narrows access fails here. What is not declared follows from the rules for everyone:
- staff may do everything, in every org;
- another org's objects (and, for a user of no org, any org's) are never shown: a detail is 404, a collection
  read leaves them out, a create naming that org, app or team is a 400 on that field; unless the caller is
  refused before any object is looked at (a key without the scope the view needs, a role the endpoint turns
  away), which is a 403.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from rest_framework.test import ForceAuthClientHandler

from tenancy.tests.factories import make_key

API = "/ingate/api/v1/"
ROLES = ("viewer", "member", "admin", "owner")
EVERYONE = frozenset(ROLES)
MEMBERS = frozenset({"member", "admin", "owner"})
ADMINS = frozenset({"admin", "owner"})
OWNERS = frozenset({"owner"})
NOBODY: frozenset[str] = frozenset()


# --- who asks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """A principal of the matrix: a user of the own org with `role`, a gateway key of the own org with
    `scopes` (made by the system, so no creator narrows them), a staff user, or a user of no org."""

    name: str
    role: str | None = None
    scopes: frozenset[str] | None = None
    staff: bool = False

    @property
    def is_key(self) -> bool:
        return self.scopes is not None

    @property
    def is_outsider(self) -> bool:
        return self.role is None and self.scopes is None and not self.staff


def _key(*scopes: str) -> Who:
    return Who(name="key " + "+".join(scopes), scopes=frozenset(scopes))


PRINCIPALS: tuple[Who, ...] = (
    *(Who(name=role, role=role) for role in ROLES),
    Who(name="staff", staff=True),
    Who(name="outsider"),
    _key("proxy"),
    _key("logs:read"),
    _key("prompts:read"),
    _key("prompts:write"),
    _key("evals:run"),
    _key("evals:run", "logs:read"),
    _key("scores:write"),
    _key("admin"),
    _key("admin", "prompts:write"),
)


# --- what they ask for -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a principal should get: a status; for a collection read, whether the target is in it; for a 400,
    the fields one of which the error must name."""

    status: int
    shown: bool | None = None  # a collection read: must show the target (True) or must not (False)
    empty: bool = False  # a list must be empty (a user of no org)
    names: frozenset[str] = frozenset()

    def __str__(self) -> str:
        shown = {True: ", shown", False: ", not shown", None: ""}[self.shown]
        names = f" naming {'/'.join(sorted(self.names))}" if self.names else ""
        return f"{self.status}{shown}{', empty' if self.empty else ''}{names}"


REFUSED = Outcome(403)
WRONG_ORG = Outcome(400, names=frozenset({"org", "app", "team"}))  # another org's org/app/team: not a valid choice


@dataclass(frozen=True)
class Action:
    """One thing an endpoint does.

    `detail`: on one object (…/<id>/…) or on the collection; `path`: a custom action's URL segment.
    `body(t, who)` / `query(t)`: the payload and query string, built from the target `t` of the org acted on.
    `roles`: the roles that may; `keys`: the scope sets any one of which lets a key do it (None: holding the
    scope the view asks of keys is enough; `gate` overrides that scope); `keys_refused`: what a key that gets
    past the gate but not `keys` gets.
    `shows(data, t)`: for a read, whether the answer (parsed JSON, or the bytes of a file) shows `t`: checked
    both ways on collections (shown where allowed, hidden from everyone else), on details where allowed.
    `elsewhere`: the status on another org's target when the generic one (404 / 200 hiding it / 400) is wrong.
    """

    name: str
    method: str = "get"
    detail: bool = True
    path: str = ""
    body: Callable[[Target, Who], Any] | None = None
    query: Callable[[Target], dict] | None = None
    multipart: bool = False
    ok: int = 200
    roles: frozenset[str] = EVERYONE
    keys: tuple[frozenset[str], ...] | None = None
    gate: frozenset[str] | None = None
    keys_refused: Outcome = REFUSED
    shows: Callable[[Any, Target], bool] | None = None
    elsewhere: int | None = None
    label: str = ""

    @property
    def id(self) -> str:
        return self.label or self.name


def rows(data) -> list:
    return data["results"] if isinstance(data, dict) else data


def listed(data, t: Target) -> bool:
    return any(row.get(t.row_field) == t.row_id for row in rows(data))


def list_(**kwargs) -> Action:
    # A page wide enough for staff, who see every org's rows.
    return Action("list", detail=False, query=lambda t: {"limit": 500}, shows=listed, **kwargs)


def retrieve(**kwargs) -> Action:
    return Action("retrieve", shows=lambda data, t: data.get(t.row_field) == t.row_id, **kwargs)


def create(body, **kwargs) -> Action:
    return Action("create", method="post", detail=False, body=body, ok=201, **kwargs)


def update(body, **kwargs) -> Action:
    return Action("update", method="patch", body=body, **kwargs)


def delete(**kwargs) -> Action:
    return Action("delete", method="delete", ok=204, **kwargs)


def custom(name: str, method: str = "get", **kwargs) -> Action:
    return Action(name, method=method, path=f"{kwargs.pop('url_path', name)}/", **kwargs)


@dataclass(frozen=True)
class Endpoint:
    """A registered API endpoint: `/ingate/api/v1/<name>/`.

    `build(world, tenant)` makes the objects its actions work on, once per test in each org, and returns the
    target (see `Target`). `read_scopes` / `write_scopes`: the scopes that let a gateway key into the view for
    GET / for anything else. `readers`: None when every role reads and a user of no org sees nothing; else only
    these roles read and anyone else is refused with 403 (the audit log).
    """

    name: str
    build: Callable[[Any, Any], Target]
    actions: tuple[Action, ...]
    read_scopes: frozenset[str]
    write_scopes: frozenset[str]
    readers: frozenset[str] | None = None


@dataclass
class Target:
    """What an endpoint's actions act on in one org: `obj` (its detail URL uses `lookup`, its list row carries
    `row_field` = `row_id`) and whatever else the payloads need, in `extra`."""

    tenant: Any
    obj: Any = None
    lookup: Any = None
    row_field: str = "id"
    row_id: Any = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.obj is not None:
            self.lookup = self.obj.pk if self.lookup is None else self.lookup
            self.row_id = self.obj.pk if self.row_id is None else self.row_id

    @property
    def org(self):
        return self.tenant.org

    def __getattr__(self, name):
        try:
            return self.__dict__["extra"][name]
        except KeyError:
            raise AttributeError(name) from None


class Matrix:
    """The registered endpoints, by name."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}

    def register(self, endpoint: Endpoint) -> Endpoint:
        assert endpoint.name not in self.endpoints, f"{endpoint.name} is registered twice"
        self.endpoints[endpoint.name] = endpoint
        return endpoint

    def cases(self) -> list[tuple[Endpoint, Action]]:
        return [(endpoint, action) for endpoint in self.endpoints.values() for action in endpoint.actions]


# --- what they should get --------------------------------------------------------------------------------


def _elsewhere(action: Action, outsider: bool) -> Outcome:
    """Another org's target, for a caller who got past the gate."""
    if action.elsewhere is not None:
        return Outcome(action.elsewhere)
    if action.detail:
        return Outcome(404)
    if action.method == "get":
        return Outcome(200, shown=False if action.shows else None, empty=outsider and action.name == "list")
    return WRONG_ORG


def turned_away(endpoint: Endpoint, action: Action, who: Who) -> bool:
    """Is `who` a key without the scope the view asks of keys? Refused before any object is looked at."""
    gate = action.gate or (endpoint.read_scopes if action.method == "get" else endpoint.write_scopes)
    return who.is_key and not who.scopes & gate


def expected(endpoint: Endpoint, action: Action, who: Who, own_side: bool) -> Outcome:
    allowed = Outcome(action.ok, shown=True if action.shows else None)
    if who.staff:
        return allowed
    if who.is_key:
        if turned_away(endpoint, action, who):
            return REFUSED
        if not own_side:
            return _elsewhere(action, outsider=False)
        may = action.keys is None or any(need <= who.scopes for need in action.keys)
        return allowed if may else action.keys_refused
    if endpoint.readers is not None and who.role not in endpoint.readers:
        return REFUSED
    if who.is_outsider or not own_side:
        return _elsewhere(action, outsider=who.is_outsider)
    return allowed if who.role in action.roles else REFUSED


# --- asking ----------------------------------------------------------------------------------------------


def url(endpoint: Endpoint, action: Action, t: Target) -> str:
    base = f"{API}{endpoint.name}/"
    return f"{base}{t.lookup}/{action.path}" if action.detail else f"{base}{action.path}"


def perform(client, endpoint: Endpoint, action: Action, t: Target, who: Who):
    target = url(endpoint, action, t)
    if action.method == "get":
        return client.get(target, action.query(t) if action.query else None)
    if action.method == "delete":
        return client.delete(target)
    body = action.body(t, who) if action.body else None
    return getattr(client, action.method)(target, body, format="multipart" if action.multipart else "json")


def content(response) -> bytes:
    """The body, streamed or not. Exports stream from an async generator (as served under ASGI), so the sync
    test client's streamed response is read on an event loop."""
    if not response.streaming:
        return response.content
    if not response.is_async:
        return b"".join(response.streaming_content)

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def problems(response, outcome: Outcome, t: Target, action: Action) -> list[str]:
    """What is wrong with `response`, given the `outcome` the rules call for (nothing: an empty list)."""
    body = content(response)
    if response.status_code != outcome.status:
        return [f"got {response.status_code}, expected {outcome}: {body[:300]!r}"]
    data = json.loads(body) if response.get("Content-Type", "").startswith("application/json") else body
    found = []
    if outcome.status == 403 and not data.get("detail"):
        found.append("a 403 without a detail saying why")
    if outcome.names and not set(data) & outcome.names:
        found.append(f"a 400 that does not name {'/'.join(sorted(outcome.names))}: {body[:300]!r}")
    if outcome.shown is not None and action.shows(data, t) != outcome.shown:
        found.append(f"the target is {'not ' if outcome.shown else ''}shown: {body[:300]!r}")
    if outcome.empty and rows(data):
        found.append(f"a user of no org sees rows: {body[:300]!r}")
    return found


def run(endpoint: Endpoint, action: Action, *, clients: dict[str, Any], targets: dict[str, Target]) -> list[str]:
    """Every principal against the own org's target and another org's, each in a savepoint rolled back
    afterwards, so every case starts from the same objects. Returns the failures. A user of no org is asked
    about the own org's target only, and so is a key turned away at the gate (which looks at no object)."""
    failures = []
    for who in PRINCIPALS:
        once = who.is_outsider or turned_away(endpoint, action, who)
        for side in ("own",) if once else ("own", "other"):
            t = targets[side]
            outcome = expected(endpoint, action, who, own_side=side == "own")
            with transaction.atomic():
                try:
                    response = perform(clients[who.name], endpoint, action, t, who)
                    found = problems(response, outcome, t, action)
                except Exception as exc:  # noqa: BLE001  (one broken case is reported with the others)
                    found = [f"raised {exc!r}"]
                transaction.set_rollback(True)
            where = "own org" if side == "own" and not who.is_outsider else f"{t.org.slug}'s"
            failures.extend(f"{who.name} on {where} {endpoint.name} {action.id}: {p}" for p in found)
    return failures


@functools.cache
def _handler() -> ForceAuthClientHandler:
    """One request handler for every client of the matrix: each new handler builds the middleware chain on its
    first request, and WhiteNoise's scan of the static files there would cost more than the requests."""
    return ForceAuthClientHandler(enforce_csrf_checks=False)


def clients_for(world, client_for) -> dict[str, Any]:
    """One API client per principal; keys of the own org's app, made by the system."""
    clients = {}
    for who in PRINCIPALS:
        if who.staff:
            clients[who.name] = client_for(user=world.staff)
        elif who.role:
            clients[who.name] = client_for(user=world.own.users[who.role])
        elif who.is_key:
            if who.scopes == {"proxy"}:
                plaintext = world.own.plaintext
            else:
                _, plaintext = make_key(app=world.own.app, scopes=sorted(who.scopes), name=who.name)
            clients[who.name] = client_for(key=plaintext)
        else:
            clients[who.name] = client_for(user=world.outsider)
    for client in clients.values():
        client.handler = _handler()
    return clients
