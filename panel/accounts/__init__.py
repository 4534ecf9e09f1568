"""Accounts: the base Django app every other app builds on (label ``accounts``).

It owns the user model, API tokens and their authentication, the one audit trail
(``AuditEvent``) with who acted and from where (``Origin``: via, client address, request id),
the base error every action raises (``ActionError``), the API's error handler and strict input
serializers, and sign-in. It imports no other app of the project: ``webapps`` and
``routing.pool`` import it, never the reverse.
"""
