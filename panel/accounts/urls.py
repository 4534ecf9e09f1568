"""Sign-in, sign-out and the account page (API tokens)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from panel.accounts import views

account_patterns = [
    path("account/", views.account, name="account"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
]

urlpatterns = [
    path("user/<str:username>/", include(account_patterns)),
    path("accounts/login/", views.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
