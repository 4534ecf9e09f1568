"""The user model: usernames unique regardless of case."""

import pytest


@pytest.mark.django_db
def test_it_keeps_usernames_unique_regardless_of_case(django_user_model):
    from django.db import IntegrityError, transaction

    django_user_model.objects.create_user("IronHand", password="x" * 12)
    with pytest.raises(IntegrityError), transaction.atomic():
        django_user_model.objects.create_user("ironhand", password="y" * 12)
    assert django_user_model.objects.get_by_natural_key("IRONHAND").username == "IronHand"
