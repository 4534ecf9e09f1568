"""Users and their web apps."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class CaseInsensitiveUserManager(UserManager):
    """Usernames are unique regardless of case: ``/user/ironhand/`` finds ``IronHand``."""

    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class User(AbstractUser):
    objects = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="webapps_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username
