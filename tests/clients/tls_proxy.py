"""A loopback TLS terminator for the dbt Cloud client tests.

dbt Cloud clients only speak HTTPS (`https://{host}/api/...`), Jade's test servers speak
plain HTTP. This forwards every TLS connection accepted on 127.0.0.1 to the upstream
`host:port` byte for byte (HTTP/1.1 keep-alive included), under a self-signed
certificate for `localhost` and `127.0.0.1` made at start-up with the `cryptography`
package.

    python tls_proxy.py --upstream 127.0.0.1:8080 --cert-dir DIR [--port 0]

writes DIR/cert.pem (the certificate, also its own trust anchor: point
REQUESTS_CA_BUNDLE / SSL_CERT_FILE at it) and DIR/key.pem, then prints one line
`LISTENING <port>` on stdout and serves until killed (with --exit-on-stdin-eof, also
until its stdin closes, so it never outlives a parent that holds that pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import sys


def make_certificate(cert_dir: str) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 that is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(cert_dir, exist_ok=True)
    cert_path = os.path.join(cert_dir, "cert.pem")
    key_path = os.path.join(cert_dir, "key.pem")
    with open(cert_path, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def serve(
    upstream_host: str, upstream_port: int, port: int, context: ssl.SSLContext, exit_on_stdin_eof: bool
) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(upstream_host, upstream_port), timeout=10
            )
        except (OSError, asyncio.TimeoutError):
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
        for writer in (client_writer, up_writer):
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    bound = server.sockets[0].getsockname()[1]
    print(f"LISTENING {bound}", flush=True)

    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def watch_stdin() -> None:
        # Ends the proxy when its parent goes away (stdin is a pipe the parent holds).
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(lambda: stdin_closed.done() or stdin_closed.set_result(None))

    if exit_on_stdin_eof:
        loop.run_in_executor(None, watch_stdin)
    async with server:
        await stdin_closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="host:port of the plain-HTTP server")
    parser.add_argument("--cert-dir", required=True, help="where cert.pem and key.pem are written")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    cert_path, key_path = make_certificate(args.cert_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    try:
        asyncio.run(serve(host or "127.0.0.1", int(port), args.port, context, args.exit_on_stdin_eof))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
