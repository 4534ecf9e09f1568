"""The backend pool as the panel stores it, its route-table version and its revision history.

Every change goes through ``routing.pool.actions``: one transaction locks the ``RouteVersion``
row, changes ``Backend`` rows, bumps the version and writes a ``Revision`` (the pool's audit row:
who and from where, as ``panel.accounts.models.Attributed`` defines it); the table for that
version is built from these rows (``routing.pool.tables``) and published after commit.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from panel.accounts.models import Attributed
from routing import table
from routing.addresses import BACKEND_NAME_HELP, BACKEND_NAME_PATTERN


class Backend(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "active"
        DRAINING = "draining", "draining"
        DISABLED = "disabled", "disabled"

    name = models.CharField(
        max_length=63,
        unique=True,
        validators=[
            RegexValidator(BACKEND_NAME_PATTERN, f"Backend names use {BACKEND_NAME_HELP}.")
        ],
        help_text=BACKEND_NAME_HELP,
    )
    address = models.CharField(max_length=300, help_text="host:port the proxies connect to")
    weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(table.MAX_WEIGHT)],
        help_text="share of apps relative to the other active backends",
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(weight__gte=1), name="routing_weight_min"),
            models.CheckConstraint(
                condition=models.Q(state__in=["active", "draining", "disabled"]),
                name="routing_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def table_entry(self) -> table.Backend:
        """This row as the route table's entry (the library's ``routing.table.Backend``)."""
        return table.Backend(
            name=self.name, address=self.address, weight=self.weight, state=self.state
        )


class RouteVersion(models.Model):
    """The single row holding the route table's version (always pk 1).

    Locking this row serialises pool changes and gives the publisher a consistent snapshot.
    """

    version = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"route table version {self.version}"

    @classmethod
    def locked(cls) -> RouteVersion:
        """The row, locked until the surrounding transaction ends (created if missing)."""
        row, _ = cls.objects.select_for_update().get_or_create(pk=1)
        return row

    @classmethod
    def current(cls) -> RouteVersion:
        return cls.objects.filter(pk=1).first() or cls(pk=1, version=0)


class Revision(Attributed):
    """One change to the pool: who (and from where), when, what, and which apps it moved."""

    version = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=32)
    backend_name = models.CharField(max_length=63, blank=True)
    summary = models.CharField(max_length=300)
    # {"field": [before, after]} for each changed field of the backend.
    changes = models.JSONField(default=dict, blank=True)
    apps_total = models.PositiveIntegerField(default=0)
    apps_moved = models.PositiveIntegerField(default=0)
    # [{"from": "b1", "to": "b3", "count": 12}, ...]; "from"/"to" is null for "no backend".
    moves = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version} {self.summary}"
