"""An independent check of AWS Signature Version 4 on a presigned (query string) request.

Written from the published algorithm with `hashlib`/`hmac` only, so that a signature made by the
AWS CRT is verified by code that shares nothing with it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PresignedRequest:
    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str
    amz_date: str
    signed_headers: list[str]
    signature: str
    security_token: str | None
    parameters: dict[str, str]


def parse_presigned(path: str) -> PresignedRequest:
    """The SigV4 query parameters of `path`; raises AssertionError naming what is malformed."""
    parameters = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    assert parameters.get("X-Amz-Algorithm") == ALGORITHM, parameters
    credential = parameters["X-Amz-Credential"].split("/")
    assert len(credential) == 5 and credential[4] == "aws4_request", credential
    access_key, date, region, service, _ = credential
    amz_date = parameters["X-Amz-Date"]
    assert _DATE.match(amz_date) and amz_date.startswith(date), amz_date
    signed_headers = parameters["X-Amz-SignedHeaders"].split(";")
    assert "host" in signed_headers and signed_headers == sorted(signed_headers), signed_headers
    signature = parameters["X-Amz-Signature"]
    assert _SIGNATURE.match(signature), signature
    return PresignedRequest(
        access_key,
        date,
        region,
        service,
        amz_date,
        signed_headers,
        signature,
        parameters.get("X-Amz-Security-Token"),
        parameters,
    )


def expected_signature(
    method: str,
    path: str,
    headers: Mapping[str, str],
    secret_key: str,
    unsigned_parameters: tuple[str, ...] = ("X-Amz-Signature", "X-Amz-Security-Token"),
) -> str:
    """The signature SigV4 gives `method path` with `headers`, signed with `secret_key`."""
    request = parse_presigned(path)
    parts = urlsplit(path)
    query = sorted(
        (_encode(key), _encode(value))
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in unsigned_parameters
    )
    lowered = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    canonical_request = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            "&".join(f"{key}={value}" for key, value in query),
            "".join(f"{name}:{lowered[name]}\n" for name in request.signed_headers),
            ";".join(request.signed_headers),
            EMPTY_PAYLOAD_SHA256,
        ]
    )
    scope = f"{request.date}/{request.region}/{request.service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, request.amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), request.date)
    for part in (request.region, request.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signed_at(request: PresignedRequest) -> datetime.datetime:
    return datetime.datetime.strptime(request.amz_date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC
    )


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
