"""Every change to the backend pool: one function each, used by the admin, the CLI and the API.

Each ``do_*`` function has the one shape of ``panel.accounts.actions``:
``do_x(target..., *, actor, origin)``. It checks its input, then in one
``transaction.atomic(durable=True)``: locks the route-table version row (so pool changes run one
at a time), changes the ``Backend`` rows, moves the version on
(``routing.versions.next_version``: a hybrid clock, so a restored database never hands out a
version readers already hold), writes a ``Revision`` (the pool's
audit row) saying who changed what and which apps move, and queues the publish task with
``transaction.on_commit``. Bad input raises ``ActionError`` naming the field (``UnknownBackend``
for a name that does not exist), before anything is written.

``preview_*`` functions answer "what would this change do" with the same code and no writes:
the admin's confirmation page and ``--dry-run`` show exactly what the action then records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel.accounts.actions import ActionError
from panel.accounts.models import User
from panel.accounts.origin import Origin
from routing.addresses import BACKEND_NAME_HELP, InvalidAddress, is_backend_name, parse_address
from routing.moves import MovePlan
from routing.pool import tables, tasks
from routing.pool.models import Backend, Revision, RouteVersion
from routing.table import MAX_WEIGHT, STATES, RouteTable
from routing.versions import next_version

MAX_NOTES = 10_000


class UnknownBackend(ActionError):
    """The change names a backend that does not exist (the API answers 404)."""


@dataclass(frozen=True)
class Change:
    """What one change does (preview) or did (committed: ``version`` and ``revision`` set)."""

    action: str
    backend: str
    summary: str
    changes: dict[str, list[Any]]
    before: RouteTable
    after: RouteTable
    plan: MovePlan
    version: int | None = None
    revision: Revision | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


# --- input checks ----------------------------------------------------------------------------


def clean_name(raw: object) -> str:
    if not is_backend_name(raw):
        raise ActionError(f"invalid backend name {raw!r}: use {BACKEND_NAME_HELP}", "name")
    return str(raw)


def clean_address(raw: object) -> str:
    """``host:port``, the host in canonical form: ``Node1.Example:80`` -> ``node1.example:80``
    (parsed by ``routing.addresses.parse_address``, the one host:port parser)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ActionError("address is required, as host:port (e.g. 127.0.0.1:9003)", "address")
    try:
        return str(parse_address(raw.strip()))
    except InvalidAddress as exc:
        # exc names the problem ("... has no port from 1 to 65535", "... has an invalid host")
        raise ActionError(
            f"invalid {exc}; expected host:port (e.g. 127.0.0.1:9003)", "address"
        ) from None


def clean_weight(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_WEIGHT:
        raise ActionError(
            f"invalid weight {raw!r}: use a whole number from 1 to {MAX_WEIGHT}", "weight"
        )
    return raw


def clean_state(raw: object) -> str:
    if raw not in STATES:
        raise ActionError(f"invalid state {raw!r}: use one of {', '.join(STATES)}", "state")
    return str(raw)


def clean_notes(raw: object) -> str:
    if not isinstance(raw, str):
        raise ActionError("notes must be text", "notes")
    if len(raw) > MAX_NOTES:
        raise ActionError(f"notes are limited to {MAX_NOTES} characters", "notes")
    return raw


# --- the plan of a change (shared by preview and commit) -------------------------------------


@dataclass(frozen=True)
class _Draft:
    action: str
    name: str
    rows: list[Backend]  # the pool after the change, unsaved
    target: Backend | None  # the row to save (None when removing)
    removed: Backend | None
    changes: dict[str, list[Any]]
    summary: str


def _find(rows: list[Backend], name: str) -> Backend:
    for row in rows:
        if row.name == name:
            return row
    raise UnknownBackend(f"no backend named {name!r}", "name")


def _check_address_free(rows: list[Backend], name: str, address: str) -> None:
    for row in rows:
        if row.address == address and row.name != name:
            raise ActionError(f"address {address} is already used by backend {row.name}", "address")


def _draft_add(rows: list[Backend], spec: dict[str, Any]) -> _Draft:
    name = clean_name(spec.get("name"))
    address = clean_address(spec.get("address"))
    weight = clean_weight(spec.get("weight", 1))
    state = clean_state(spec.get("state", Backend.State.ACTIVE))
    notes = clean_notes(spec.get("notes", ""))
    if any(row.name == name for row in rows):
        raise ActionError(f"a backend named {name!r} already exists", "name")
    _check_address_free(rows, name, address)
    new = Backend(name=name, address=address, weight=weight, state=state, notes=notes)
    changes = {"address": [None, address], "weight": [None, weight], "state": [None, state]}
    if notes:
        changes["notes"] = [None, notes]
    summary = f"added {name} ({address}, weight {weight}, {state})"
    return _Draft("backend.add", name, [*rows, new], new, None, changes, summary)


def _draft_update(rows: list[Backend], spec: dict[str, Any], action: str) -> _Draft:
    name = clean_name(spec.get("name"))
    current = _find(rows, name)
    wanted: dict[str, Any] = {}
    if spec.get("address") is not None:
        wanted["address"] = clean_address(spec["address"])
        _check_address_free(rows, name, wanted["address"])
    if spec.get("weight") is not None:
        wanted["weight"] = clean_weight(spec["weight"])
    if spec.get("state") is not None:
        wanted["state"] = clean_state(spec["state"])
    if spec.get("notes") is not None:
        wanted["notes"] = clean_notes(spec["notes"])
    changes = {
        key: [getattr(current, key), value]
        for key, value in wanted.items()
        if getattr(current, key) != value
    }
    updated = Backend(
        pk=current.pk,
        name=current.name,
        address=wanted.get("address", current.address),
        weight=wanted.get("weight", current.weight),
        state=wanted.get("state", current.state),
        notes=wanted.get("notes", current.notes),
        created_at=current.created_at,
        updated_at=timezone.now(),
    )
    new_rows = [updated if row.name == name else row for row in rows]
    described = [
        f"{key} {old} -> {new}" if key != "notes" else "notes changed"
        for key, (old, new) in changes.items()
    ]
    summary = f"{name}: " + (", ".join(described) if described else "no change")
    return _Draft(action, name, new_rows, updated, None, changes, summary)


def _draft_remove(rows: list[Backend], spec: dict[str, Any]) -> _Draft:
    name = clean_name(spec.get("name"))
    current = _find(rows, name)
    changes = {"address": [current.address, None], "state": [current.state, None]}
    new_rows = [row for row in rows if row.name != name]
    return _Draft("backend.remove", name, new_rows, None, current, changes, f"removed {name}")


def _draft(action: str, rows: list[Backend], spec: dict[str, Any]) -> _Draft:
    if action == "backend.add":
        return _draft_add(rows, spec)
    if action == "backend.remove":
        return _draft_remove(rows, spec)
    return _draft_update(rows, spec, action)


def _check_leaves_an_active_backend(before: RouteTable, after: RouteTable, force: bool) -> None:
    if before.active and not after.active and not force:
        raise ActionError(
            "this change leaves no active backend, so no app would be served; "
            "repeat it with force (--force) if that is intended",
            "force",
        )


def _change(
    action: str, rows: list[Backend], spec: dict[str, Any], version_row: RouteVersion, force: bool
) -> tuple[_Draft, Change]:
    draft = _draft(action, rows, spec)
    before = tables.version_table(version_row, rows)
    after = tables.table_of(next_version(version_row.version, timezone.now()), draft.rows, None)
    if draft.changes:
        _check_leaves_an_active_backend(before, after, force)
    plan = tables.plan(before, after)
    change = Change(
        action=draft.action,
        backend=draft.name,
        summary=draft.summary,
        changes=draft.changes,
        before=before,
        after=after,
        plan=plan,
    )
    return draft, change


def preview(action: str, spec: dict[str, Any], force: bool = False) -> Change:
    """What ``action`` with ``spec`` would do now; raises ``ActionError`` as the action would."""
    rows = list(Backend.objects.order_by("name"))
    return _change(action, rows, spec, RouteVersion.current(), force)[1]


def preview_steps(steps: list[tuple[str, dict[str, Any]]], force: bool = False) -> Change:
    """The combined effect of several changes made one after another (the admin's bulk drain,
    activate and disable): one ``Change`` from the pool now to the pool after the last step."""
    if not steps:
        raise ActionError("nothing selected")
    rows = list(Backend.objects.order_by("name"))
    version_row = RouteVersion.current()
    before = tables.version_table(version_row, rows)
    changes: dict[str, list[Any]] = {}
    summaries = []
    for action, spec in steps:
        draft = _draft(action, rows, spec)
        rows = draft.rows
        changes.update({f"{draft.name}.{k}": v for k, v in draft.changes.items()})
        if draft.changes:
            summaries.append(draft.summary)
    version, now = version_row.version, timezone.now()
    for _ in summaries:
        version = next_version(version, now)
    after = tables.table_of(version, rows, None)
    if changes:
        _check_leaves_an_active_backend(before, after, force)
    return Change(
        action="several" if len(steps) > 1 else steps[0][0],
        backend=", ".join(spec.get("name", "") for _, spec in steps),
        summary="; ".join(summaries) or "no change",
        changes=changes,
        before=before,
        after=after,
        plan=tables.plan(before, after),
    )


def _record(
    version_row: RouteVersion,
    version: int,
    now: datetime,
    actor: User | None,
    origin: Origin,
    **fields: Any,
) -> Revision:
    """Move the locked version row to ``version``, committed at ``now``, and write its
    revision; publish after commit."""
    version_row.version = version
    version_row.changed_at = now
    version_row.save(update_fields=["version", "changed_at"])
    revision = Revision.objects.create(
        **Revision.attribution(actor, origin),
        version=version_row.version,
        created_at=version_row.changed_at,
        **fields,
    )
    tasks.publish_routes.delay_on_commit(version_row.version)
    return revision


def _commit(
    action: str, spec: dict[str, Any], force: bool, actor: User | None, origin: Origin
) -> Change:
    with transaction.atomic(durable=True):
        version_row = RouteVersion.locked()
        rows = list(Backend.objects.order_by("name"))
        draft, change = _change(action, rows, spec, version_row, force)
        if not change.changed:
            return change
        if draft.removed is not None:
            draft.removed.delete()
        if draft.target is not None:
            draft.target.save()
        now = timezone.now()
        revision = _record(
            version_row,
            next_version(version_row.version, now),
            now,
            actor,
            origin,
            action=change.action,
            backend_name=change.backend,
            summary=change.summary[:300],
            changes=change.changes,
            apps_total=change.plan.total,
            apps_moved=change.plan.moved,
            moves=change.plan.counts(),
        )
    after = tables.version_table(version_row, draft.rows)
    return replace(change, after=after, version=version_row.version, revision=revision)


# --- the actions -----------------------------------------------------------------------------


def do_add_backend(
    name: str,
    address: str,
    *,
    actor: User | None,
    origin: Origin,
    weight: int = 1,
    state: str = Backend.State.ACTIVE,
    notes: str = "",
) -> Change:
    spec = {"name": name, "address": address, "weight": weight, "state": state, "notes": notes}
    return _commit("backend.add", spec, False, actor, origin)


def do_update_backend(
    name: str,
    *,
    actor: User | None,
    origin: Origin,
    address: str | None = None,
    weight: int | None = None,
    state: str | None = None,
    notes: str | None = None,
    force: bool = False,
) -> Change:
    spec = {"name": name, "address": address, "weight": weight, "state": state, "notes": notes}
    return _commit("backend.update", spec, force, actor, origin)


def do_set_weight(name: str, weight: int, *, actor: User | None, origin: Origin) -> Change:
    return _commit("backend.set_weight", {"name": name, "weight": weight}, False, actor, origin)


def do_drain(name: str, *, actor: User | None, origin: Origin, force: bool = False) -> Change:
    """Stop routing apps to ``name``; it stays in the table (shown as draining) until removed."""
    spec = {"name": name, "state": Backend.State.DRAINING}
    return _commit("backend.drain", spec, force, actor, origin)


def do_activate(name: str, *, actor: User | None, origin: Origin) -> Change:
    spec = {"name": name, "state": Backend.State.ACTIVE}
    return _commit("backend.activate", spec, False, actor, origin)


def do_disable(name: str, *, actor: User | None, origin: Origin, force: bool = False) -> Change:
    spec = {"name": name, "state": Backend.State.DISABLED}
    return _commit("backend.disable", spec, force, actor, origin)


def do_remove_backend(
    name: str, *, actor: User | None, origin: Origin, force: bool = False
) -> Change:
    return _commit("backend.remove", {"name": name}, force, actor, origin)


def do_bump_version(at_least: int, *, actor: User | None, origin: Origin) -> int:
    """Move the version past ``at_least`` (e.g. past a table Redis holds from a restored backup)
    and publish: the pool is unchanged, but its table is now the newest."""
    if isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 0:
        raise ActionError(f"invalid version {at_least!r}", "version")
    with transaction.atomic(durable=True):
        version_row = RouteVersion.locked()
        old = version_row.version
        now = timezone.now()
        # A version Redis holds ahead of the database (and of this clock) is skipped past.
        new = max(next_version(old, now), at_least + 1)
        _record(
            version_row,
            new,
            now,
            actor,
            origin,
            action="version.bump",
            summary=f"version {old} -> {new} (pool unchanged)",
            changes={"version": [old, new]},
            apps_total=len(tables.app_keys()),
        )
    return version_row.version
