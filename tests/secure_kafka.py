"""A secured Kafka listener for tests: TLS and SASL in front of the embedded Tansu broker.

Tansu 0.6.0 (the embedded broker) has no TLS listener (its ``--cert``/``--key`` flags do not
secure the Kafka port) and its SCRAM users can only be created through an authenticated
connection, so tests put ``SecureProxy`` in front of it:

* TLS is real: Python's ``ssl`` (OpenSSL) server side, with certificates made here by
  ``cryptography`` (a CA, broker certificates for 127.0.0.1 and for another name, client
  certificates, an encrypted client key);
* SASL is the Kafka protocol's: the proxy answers SaslHandshake (api key 17) and
  SaslAuthenticate (36) itself, checks PLAIN passwords, runs the server side of SCRAM-SHA-256/512
  with ``scramp`` (the client's proof is verified, the server signature sent back) and checks
  OAUTHBEARER tokens; any other request before authentication closes the connection, as Kafka
  does. ApiVersions is forwarded to Tansu so clients see the broker's real versions;
* Tansu advertises the proxy's address, so after bootstrap every connection of every client
  (metadata, produce, fetch, group coordinator) goes through TLS/SASL too.

ACLs: the proxy can play one Kafka ACL, "no CREATE": CreateTopics is then answered with
TOPIC_AUTHORIZATION_FAILED (and nothing is created), as Kafka answers a principal without the
CREATE permission. Other ACLs and re-authentication (KIP-368) are not simulated. The security
mode can be changed between tests; it applies to new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import ipaddress
import ssl
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.protocol import admin as kafka_admin
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from scramp import ScramException, ScramMechanism

from streams.kafka.broker import EmbeddedBroker, free_port

API_CREATE_TOPICS = 19
API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
TOPIC_AUTHORIZATION_FAILED = 29
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58


# -- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a test PKI; ``broker_*`` names 127.0.0.1, ``other_*`` only other.example."""

    ca: Path
    broker_cert: Path
    broker_key: Path
    other_cert: Path
    other_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path
    key_password: str
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path

    def server_context(
        self, *, other_name: bool = False, require_client_cert: bool = False
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if other_name:
            ctx.load_cert_chain(self.other_cert, self.other_key)
        else:
            ctx.load_cert_chain(self.broker_cert, self.broker_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca)
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> None:
    algorithm: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algorithm)
    )


def _issue(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    cn: str,
    *,
    sans: list[x509.GeneralName] | None = None,
    ca: bool = False,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    """A CA, two broker certificates, client certificates (one from a CA nobody trusts)."""
    directory.mkdir(parents=True, exist_ok=True)

    def pem(name: str, cert: x509.Certificate) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def key_file(name: str, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> Path:
        path = directory / name
        _write_key(path, key, password)
        return path

    ca = _issue(None, "vigil test CA", ca=True)
    rogue = _issue(None, "rogue CA", ca=True)
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    broker = _issue(ca, "broker", sans=loopback)
    other = _issue(ca, "other.example", sans=[x509.DNSName("other.example")])
    client = _issue(ca, "vigil-worker", client=True)
    rogue_client = _issue(rogue, "vigil-worker", client=True)
    password = "s3cret-key-pass"
    return Pki(
        ca=pem("ca.pem", ca[0]),
        broker_cert=pem("broker.pem", broker[0]),
        broker_key=key_file("broker.key", broker[1]),
        other_cert=pem("other.pem", other[0]),
        other_key=key_file("other.key", other[1]),
        client_cert=pem("client.pem", client[0]),
        client_key=key_file("client.key", client[1]),
        client_key_encrypted=key_file("client-encrypted.key", client[1], password),
        key_password=password,
        rogue_ca=pem("rogue-ca.pem", rogue[0]),
        rogue_client_cert=pem("rogue-client.pem", rogue_client[0]),
        rogue_client_key=key_file("rogue-client.key", rogue_client[1]),
    )


# -- SASL server side --------------------------------------------------------------------


class AuthFailed(Exception):
    pass


@dataclass
class SaslUsers:
    """Who may log in: user passwords (PLAIN and SCRAM) and accepted OAUTHBEARER tokens."""

    passwords: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


class _Login:
    """One connection's SASL exchange; ``step`` returns (reply bytes, done)."""

    def __init__(self, mechanism: str, users: SaslUsers) -> None:
        self.mechanism = mechanism
        self.users = users
        self.principal: str | None = None
        self.token: str | None = None
        self._scram = None
        if mechanism.startswith("SCRAM-"):
            scram = ScramMechanism(mechanism)

            def auth_info(username: str) -> tuple[bytes, bytes, bytes, int]:
                if username not in users.passwords:
                    raise AuthFailed(f"unknown user {username}")
                self.principal = username
                salt, stored, server, iterations = scram.make_auth_info(
                    users.passwords[username], iteration_count=4096
                )
                return salt, stored, server, iterations

            self._scram = scram.make_server(auth_info)
            self._scram_round = 0

    def step(self, data: bytes) -> tuple[bytes, bool]:
        if self.mechanism == "PLAIN":
            try:
                _authzid, user, password = data.decode().split("\0")
            except ValueError:
                raise AuthFailed("malformed PLAIN message") from None
            if self.users.passwords.get(user) != password:
                raise AuthFailed(f"bad password for {user}")
            self.principal = user
            return b"", True
        if self.mechanism == "OAUTHBEARER":
            text = data.decode()
            fields = dict(
                part.split("=", 1)
                for part in text.split("\x01")
                if "=" in part and part[:3] != "n,,"
            )
            auth = fields.get("auth", "")
            if not auth.startswith("Bearer "):
                raise AuthFailed("no bearer token")
            self.token = auth[len("Bearer ") :]
            if self.token not in self.users.tokens:
                raise AuthFailed("token not accepted")
            self.principal = "oauth"
            return b"", True
        assert self._scram is not None
        try:
            if self._scram_round == 0:
                self._scram_round = 1
                self._scram.set_client_first(data.decode())
                return self._scram.get_server_first().encode(), False
            self._scram.set_client_final(data.decode())
            return self._scram.get_server_final().encode(), True
        except ScramException as exc:
            raise AuthFailed(f"SCRAM: {exc}") from None


def _string(data: bytes, pos: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if length < 0:
        return None, pos
    return data[pos : pos + length].decode(), pos + length


def _encode_string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


# -- the proxy ---------------------------------------------------------------------------


@dataclass
class Login:
    mechanism: str
    principal: str | None
    token: str | None


class SecureProxy:
    """TLS (and optionally SASL) terminating proxy to one plaintext upstream, in its own thread."""

    def __init__(self, upstream_port: int, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.upstream_port = upstream_port
        self.tls: ssl.SSLContext | None = None
        self.sasl: SaslUsers | None = None
        self.deny_create = False
        self.denied_creates: list[str] = []
        self.tls_handshakes = 0
        self.tls_refused = 0
        self.logins: list[Login] = []
        self.sasl_refused: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def configure(
        self,
        tls: ssl.SSLContext | None,
        sasl: SaslUsers | None = None,
        *,
        deny_create: bool = False,
    ) -> None:
        """Security of new connections (existing ones keep theirs); resets the counters."""
        self.tls, self.sasl, self.deny_create = tls, sasl, deny_create
        self.denied_creates = []
        self.tls_handshakes = self.tls_refused = 0
        self.logins, self.sasl_refused = [], []

    def start(self) -> None:
        self._thread.start()
        self._run(self._start())

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls, sasl, deny_create = self.tls, self.sasl, self.deny_create
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if tls is not None:
                try:
                    await writer.start_tls(tls)
                except (ssl.SSLError, OSError, ConnectionError):
                    self.tls_refused += 1
                    return
                self.tls_handshakes += 1
            up_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
            if sasl is not None and not await self._authenticate(
                reader, writer, up_reader, upstream_writer, sasl
            ):
                return
            if deny_create:
                await self._relay_denying_create(reader, writer, up_reader, upstream_writer)
            else:
                await asyncio.gather(
                    self._pipe(reader, upstream_writer), self._pipe(up_reader, writer)
                )
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def _relay_denying_create(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Frame by frame; CreateTopics is refused here, after the responses still owed to the
        client, so responses stay in request order (requests without a response, like acks=0
        produce, are not supported: Vigil sends none)."""
        owed = 0
        idle = asyncio.Event()
        idle.set()

        async def to_client() -> None:
            nonlocal owed
            while True:
                frame = await _read_frame(up_reader)
                writer.write(_frame(frame))
                await writer.drain()
                owed -= 1
                if owed == 0:
                    idle.set()

        async def to_broker() -> None:
            nonlocal owed
            while True:
                frame = await _read_frame(reader)
                api_key, api_version, corr = struct.unpack_from(">hhi", frame)
                if api_key == API_CREATE_TOPICS:
                    await idle.wait()
                    names, response = _refuse_create_topics(frame, api_version)
                    self.denied_creates.extend(names)
                    writer.write(_frame(struct.pack(">i", corr) + response))
                    await writer.drain()
                    continue
                owed += 1
                idle.clear()
                up_writer.write(_frame(frame))
                await up_writer.drain()

        tasks = [asyncio.create_task(to_client()), asyncio.create_task(to_broker())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        users: SaslUsers,
    ) -> bool:
        login: _Login | None = None
        while True:
            frame = await _read_frame(reader)
            api_key, api_version, corr = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:  # the broker's own answer
                up_writer.write(_frame(frame))
                await up_writer.drain()
                writer.write(_frame(await _read_frame(up_reader)))
                await writer.drain()
                continue
            _client_id, pos = _string(frame, 8)
            head = struct.pack(">i", corr)
            if api_key == API_SASL_HANDSHAKE and login is None:
                mechanism, _ = _string(frame, pos)
                ok = mechanism in users.mechanisms
                body = struct.pack(
                    ">hi", 0 if ok else UNSUPPORTED_SASL_MECHANISM, len(users.mechanisms)
                )
                body += b"".join(_encode_string(m) for m in users.mechanisms)
                writer.write(_frame(head + body))
                await writer.drain()
                if not ok:
                    self.sasl_refused.append(f"mechanism {mechanism}")
                    return False
                assert mechanism is not None
                login = _Login(mechanism, users)
                continue
            if api_key == API_SASL_AUTHENTICATE and login is not None:
                (length,) = struct.unpack_from(">i", frame, pos)
                data = frame[pos + 4 : pos + 4 + length]
                try:
                    reply, done = login.step(data)
                    code, message = 0, None
                except AuthFailed as exc:
                    reply, done, code, message = b"", False, SASL_AUTHENTICATION_FAILED, str(exc)
                body = struct.pack(">h", code) + _encode_string(message)
                body += struct.pack(">i", len(reply)) + reply
                if api_version >= 1:
                    body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
                writer.write(_frame(head + body))
                await writer.drain()
                if code:
                    self.sasl_refused.append(message or "")
                    return False
                if done:
                    self.logins.append(Login(login.mechanism, login.principal, login.token))
                    return True
                continue
            self.sasl_refused.append(f"api key {api_key} before authentication")
            return False


def _refuse_create_topics(frame: bytes, version: int) -> tuple[list[str], bytes]:
    """Topic names of a CreateTopics request and Kafka's answer to a principal without CREATE."""
    _client_id, pos = _string(frame, 8)
    request = getattr(kafka_admin, f"CreateTopicsRequest_v{version}")
    fields = request.SCHEMA.decode(io.BytesIO(frame[pos:]))
    names = [str(topic[0]) for topic in fields[0]]
    message = "Authorization failed."
    response = getattr(kafka_admin, f"CreateTopicsResponse_v{version}")
    if version == 0:
        body = response([(n, TOPIC_AUTHORIZATION_FAILED) for n in names])
    elif version == 1:
        body = response([(n, TOPIC_AUTHORIZATION_FAILED, message) for n in names])
    else:
        body = response(0, [(n, TOPIC_AUTHORIZATION_FAILED, message) for n in names])
    return names, body.encode()


class SecureBroker:
    """Tansu on a private port, advertising the proxy in front of it (all traffic proxied)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.proxy_port = free_port()
        self.tansu = _AdvertisingBroker(advertised_port=self.proxy_port)
        self.proxy = SecureProxy(self.tansu.port, self.proxy_port)

    @property
    def bootstrap(self) -> str:
        return self.proxy.bootstrap

    def start(self) -> None:
        self.tansu.start()
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()
        self.tansu.stop()


class _AdvertisingBroker(EmbeddedBroker):
    def __init__(self, advertised_port: int) -> None:
        super().__init__()
        self.advertised_port = advertised_port

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--advertised-listener-url")
        cmd[at + 1] = f"tcp://127.0.0.1:{self.advertised_port}"
        return cmd
