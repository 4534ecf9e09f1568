"""Each user's stable numeric identity: allocated once from OWNER_UID_MIN..OWNER_UID_MAX."""

import pytest

from panel.accounts.models import UidRangeExhausted, User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_it_gives_each_new_user_a_uid_of_the_owner_range(hosting_settings):
    hosting_settings.OWNER_UID_MIN, hosting_settings.OWNER_UID_MAX = 1_200_000, 1_200_009
    ann, bob = make_user("ann"), make_user("bob")
    assert ann.uid == 1_200_000 and bob.uid == 1_200_001
    assert ann.gid == ann.uid


def test_it_keeps_the_uid_when_the_user_is_saved_again(hosting_settings):
    ann = make_user("ann")
    first = ann.uid
    ann.email = "ann@example.com"
    ann.save()
    assert User.objects.get(pk=ann.pk).uid == first


def test_it_fills_a_gap_when_the_top_of_the_range_is_taken(hosting_settings):
    hosting_settings.OWNER_UID_MIN, hosting_settings.OWNER_UID_MAX = 1_300_000, 1_300_002
    make_user("ann"), make_user("bob"), make_user("cat")
    User.objects.filter(username="bob").delete()
    assert make_user("dan").uid == 1_300_001


def test_it_refuses_a_new_user_when_the_range_is_exhausted(hosting_settings):
    hosting_settings.OWNER_UID_MIN, hosting_settings.OWNER_UID_MAX = 1_400_000, 1_400_000
    make_user("ann")
    with pytest.raises(UidRangeExhausted, match=r"OWNER_UID_MIN\.\.OWNER_UID_MAX"):
        make_user("bob")
    assert not User.objects.filter(username="bob").exists()


def test_the_checks_refuse_a_panel_uid_inside_the_owner_range(settings):
    from panel.accounts.checks import check_account_settings

    settings.OWNER_UID_MIN, settings.OWNER_UID_MAX, settings.PANEL_UID = 100, 200, 150
    assert [e.id for e in check_account_settings()] == ["accounts.E001"]
    settings.PANEL_UID = 999_999
    settings.PANEL_GID = 999_999
    assert check_account_settings() == []
