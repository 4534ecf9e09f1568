"""Ordering one certificate over ACME (RFC 8555) with HTTP-01, on certbot's ``acme`` library
(decision 0093). No Django: the caller passes the configuration and two callbacks that publish
and withdraw a challenge answer (``webapps.tls`` sends them to every proxy, signed).

    order_certificate(domain, config, publish=..., withdraw=...) -> Issued(chain_pem, key_pem)

Every failure is an ``AcmeFailure`` whose ``message`` says in plain words what went wrong
(``kind``: ``dns``, ``unreachable``, ``wrong_answer``, ``rate_limited``, ``server_down``,
``refused``, ``timeout``), for the Web tab and ``GET .../ssl/``. A fresh key is made for every
order (renewals included); it leaves this module only in the returned ``Issued``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

USER_AGENT = "hosting-panel-acme"


@dataclass(frozen=True)
class AcmeConfig:
    directory: str
    account_key_file: Path
    ca_bundle: str = ""  # a CA file to trust the ACME server by; "" for the system's
    email: str = ""
    timeout: float = 120.0
    settle_seconds: float = 0.3


@dataclass(frozen=True)
class Issued:
    chain_pem: str
    key_pem: bytes


class AcmeFailure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def account_key(path: Path) -> jose.JWKRSA:
    """The ACME account key: made once (RSA 2048, PKCS#8 PEM, 0600), then always the same."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            with contextlib.suppress(FileExistsError):  # another worker made it first
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    loaded = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return jose.JWKRSA(key=loaded)


def _client(config: AcmeConfig, jwk: jose.JWKRSA) -> client.ClientV2:
    verify: bool | str = config.ca_bundle or True
    net = client.ClientNetwork(
        jwk, alg=jose.RS256, verify_ssl=verify, user_agent=USER_AGENT, timeout=10
    )
    directory = client.ClientV2.get_directory(config.directory, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(
        email=config.email or None, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:  # this key already has an account: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme


def _plain(domain: str, error: messages.Error | None) -> AcmeFailure:
    detail = (error.detail or "").strip() if error is not None else ""
    code = (error.code or "") if error is not None else ""
    url = f"http://{domain}/.well-known/acme-challenge/"
    if code == "dns":
        return AcmeFailure("dns", f"DNS for {domain} does not resolve ({detail})")
    if code in ("connection", "tls"):
        return AcmeFailure(
            "unreachable",
            f"the challenge at {url} could not be reached; point {domain}'s DNS at this "
            f"platform's proxies ({detail})",
        )
    if code in ("unauthorized", "incorrectResponse"):
        return AcmeFailure(
            "wrong_answer",
            f"{domain} answered the challenge wrongly; its DNS may point at another server "
            f"({detail})",
        )
    if code == "rateLimited":
        return AcmeFailure("rate_limited", f"rate limited by the certificate authority ({detail})")
    if code in ("rejectedIdentifier", "caa"):
        return AcmeFailure("refused", f"the certificate authority refuses {domain} ({detail})")
    return AcmeFailure("refused", f"the certificate authority refused the order: {detail or code}")


def _poll(acme: client.ClientV2, authzr, deadline: datetime):
    wait = 0.05
    while True:
        authzr, _response = acme.poll(authzr)
        if authzr.body.status != messages.STATUS_PENDING:
            return authzr
        if datetime.now() + timedelta(seconds=wait) > deadline:
            raise errors.TimeoutError()
        time.sleep(wait)
        wait = min(wait * 2, 1.0)


def _finalize(acme: client.ClientV2, order: messages.OrderResource, deadline: datetime) -> str:
    """Finalize and fetch the chain, polling with a short, growing interval (the library's own
    loop waits a whole second before its first look)."""
    nonce_url = acme.directory.newNonce
    order = acme.begin_finalization(order)
    wait = 0.05
    while True:
        body = order.body
        if body.status == messages.STATUS_INVALID:
            if body.error is not None:
                raise errors.IssuanceError(body.error)
            raise errors.Error("the order became invalid without a reason")
        if body.status == messages.STATUS_VALID and body.certificate is not None:
            return acme.net.post(body.certificate, None, new_nonce_url=nonce_url).text
        if datetime.now() + timedelta(seconds=wait) > deadline:
            raise errors.TimeoutError()
        time.sleep(wait)
        wait = min(wait * 2, 1.0)
        response = acme.net.post(order.uri, None, new_nonce_url=nonce_url)
        order = order.update(body=messages.Order.from_json(response.json()))


def order_certificate(
    domain: str,
    config: AcmeConfig,
    *,
    publish: Callable[[dict[str, str]], None],
    withdraw: Callable[[list[str]], None],
) -> Issued:
    """Order a certificate for ``domain``; ``publish(tokens)`` must make every proxy answer
    the HTTP-01 challenges before it returns (``token -> key authorization``)."""
    deadline = datetime.now() + timedelta(seconds=config.timeout)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tokens: list[str] = []
    try:
        try:
            jwk = account_key(config.account_key_file)
            acme = _client(config, jwk)
            order = acme.new_order(crypto_util.make_csr(key_pem, [domain]))
            answers = {}
            pending = []
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # an authorisation still valid from an earlier order
                challb = next(
                    (c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                    None,
                )
                if challb is None:
                    raise AcmeFailure("refused", "the certificate authority offers no HTTP-01")
                response, validation = challb.response_and_validation(jwk)
                token = challb.chall.encode("token")
                answers[token] = validation
                pending.append((authzr, challb, response))
            if answers:
                tokens = list(answers)
                publish(answers)
                if config.settle_seconds:
                    time.sleep(config.settle_seconds)
            for _authzr, challb, response in pending:
                acme.answer_challenge(challb, response)
            for authzr, _challb, _response in pending:
                done = _poll(acme, authzr, deadline)
                if done.body.status != messages.STATUS_VALID:
                    failed = next((c.error for c in done.body.challenges if c.error), None)
                    raise _plain(domain, failed)
            chain_pem = _finalize(acme, order, deadline)
        except messages.Error as exc:
            raise _plain(domain, exc) from None
        except errors.ValidationError as exc:
            errs = [c.error for a in exc.failed_authzrs for c in a.body.challenges if c.error]
            raise _plain(domain, errs[0] if errs else None) from None
        except errors.IssuanceError as exc:
            raise _plain(domain, exc.error) from None
        except errors.TimeoutError:
            raise AcmeFailure(
                "timeout", f"the certificate authority did not finish within {config.timeout:.0f} s"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AcmeFailure(
                "server_down",
                f"the certificate authority at {config.directory} cannot be reached "
                f"({type(exc).__name__})",
            ) from None
        except (errors.Error, requests.RequestException, jose.errors.Error) as exc:
            raise AcmeFailure("refused", f"the ACME exchange failed: {exc}") from None
    finally:
        if tokens:
            withdraw(tokens)
    return Issued(chain_pem=chain_pem, key_pem=key_pem)
