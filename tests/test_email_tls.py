"""SMTP with STARTTLS and with implicit TLS against aiosmtpd on loopback, certificates verified."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from email.message import EmailMessage

import pytest

from digest.delivery import PermanentDeliveryError
from digest.mail import SmtpConfig, SmtpTransport
from tests.email_helpers import Recorder, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
FROM = "briefcast <brief@briefs.example>"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def message() -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = FROM, "ana@reader.example", "brief", "<tls-1@briefs.example>"
    m.set_content("hello over TLS")
    return m


def serve(mode: str, server_context):
    from aiosmtpd.controller import Controller

    recorder, port = Recorder(), free_port()
    if mode == "starttls":
        controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=server_context,
                                require_starttls=True)
    else:
        controller = Controller(recorder, hostname="127.0.0.1", port=port, ssl_context=server_context,
                                server_hostname="127.0.0.1")
    controller.start()
    return controller, recorder, port


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_delivery_verifies_the_server(certificate, mode):
    cert, server_context = certificate
    controller, recorder, port = serve(mode, server_context)
    try:
        trusted = SmtpConfig("127.0.0.1", port, mode, None, None, 10.0, FROM, ca_file=str(cert))
        assert SmtpTransport(trusted).send(message()) == "<tls-1@briefs.example>"
        assert len(recorder.received) == 1 and "hello over TLS" in recorder.received[0].raw.decode()
        untrusted = SmtpConfig("127.0.0.1", port, mode, None, None, 10.0, FROM)  # system CAs only
        with pytest.raises(PermanentDeliveryError, match="certificate verify failed"):
            SmtpTransport(untrusted).send(message())
        assert len(recorder.received) == 1
    finally:
        controller.stop()


def test_a_server_that_demands_starttls_refuses_plain_mail(certificate):
    _, server_context = certificate
    controller, recorder, port = serve("starttls", server_context)
    try:
        plain = SmtpConfig("127.0.0.1", port, "none", None, None, 10.0, FROM)
        with pytest.raises(PermanentDeliveryError, match="530"):
            SmtpTransport(plain).send(message())
    finally:
        controller.stop()
    assert recorder.received == []
