"""Checks of single values that several sections share.

Each answers None for a good value, else the problem in words that follow the value in
the error line (`<key>: "<value>" <problem>`). Checks that only one key uses live beside
that key in its section module.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Optional
from urllib.parse import urlsplit

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

_QUANTITY_SCALE = {
    None: Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity_value(text: str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match.group(1)) * _QUANTITY_SCALE[match.group(3)]


def is_quantity(text: str) -> bool:
    return bool(_QUANTITY.match(text))


def check_quantity(text: str) -> Optional[str]:
    return None if is_quantity(text) else "is not a Kubernetes quantity; expected e.g. 500m, 2, 1Gi, 512Mi"


def check_dns_label(text: str) -> Optional[str]:
    if len(text) <= 63 and _DNS_LABEL.match(text):
        return None
    return "is not a DNS label; expected at most 63 lowercase letters, digits and '-', starting and ending alphanumeric"


def check_hostname(text: str) -> Optional[str]:
    labels = text.split(".")
    if len(text) <= 253 and len(labels) >= 2 and all(len(label) <= 63 and _DNS_LABEL.match(label) for label in labels):
        return None
    return "is not a DNS host name; expected lowercase labels joined by dots, e.g. label.example.com"


def check_dns_subdomain(text: str) -> Optional[str]:
    """Names of most Kubernetes objects (Secrets, IngressClasses, ClusterIssuers)."""
    labels = text.split(".")
    if len(text) <= 253 and all(len(label) <= 63 and _DNS_LABEL.match(label) for label in labels):
        return None
    return "is not a Kubernetes object name; expected lowercase letters, digits, '-' and '.', e.g. letsencrypt-prod"


def check_host_or_ip(text: str) -> Optional[str]:
    if is_ip(text) or check_hostname(text) is None or check_dns_label(text) is None:
        return None
    return "is not a host name or IP address"


def check_semver(text: str) -> Optional[str]:
    return None if _SEMVER.match(text) else "is not a pinned version; expected an exact version like 2.0.5"


def is_semver(text: str) -> bool:
    return bool(_SEMVER.match(text))


def check_email(text: str) -> Optional[str]:
    return None if _EMAIL.match(text) else "is not an email address; expected e.g. admin@example.com"


def check_arn(text: str) -> Optional[str]:
    return None if _ARN.match(text) else "is not an ARN; expected arn:aws:<service>:<region>:<account>:<resource>"


def check_label_key(text: str) -> Optional[str]:
    return None if _LABEL_KEY.match(text) and len(text) <= 253 else "is not a Kubernetes label key"


def check_label_value(text: str) -> Optional[str]:
    if text == "" or (len(text) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", text)):
        return None
    return "is not a Kubernetes label value; expected at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends"


def check_regex(text: str) -> Optional[str]:
    try:
        re.compile(text)
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    return None


def check_region(text: str) -> Optional[str]:
    return None if re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", text) else "is not an AWS region; expected e.g. us-east-1"


def check_store_region(text: str) -> Optional[str]:
    """S3-compatible stores name regions freely: auto (Cloudflare R2), fr-par, nyc3, default."""
    if re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", text):
        return None
    return "is not a region name; expected letters, digits, '-', '_' or '.', e.g. us-east-1, auto, fr-par"


def check_http_origin(text: str) -> Optional[str]:
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and parts.path in ("",) and not parts.query:
        return None
    return "is not an origin; expected scheme and host only, e.g. https://label.example.com"


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# A real digest is a SHA-256: random hex. These patterns turn up in a random 64-digit hex string
# less often than once in a million, and in every digest someone typed as a stand-in.
_FEWEST_DISTINCT_DIGITS = 8
_LONGEST_STEP_RUN = 8
_HEX = "0123456789abcdef"


def placeholder_pattern(hex_digits: str) -> Optional[str]:
    """What makes a digest look made up (repeated, few digits, counting up), or None."""
    for period in range(1, 17):
        if hex_digits == (hex_digits[:period] * (64 // period + 1))[:len(hex_digits)]:
            return f"it repeats {hex_digits[:period]!r}"
    if len(set(hex_digits)) < _FEWEST_DISTINCT_DIGITS:
        return f"only {len(set(hex_digits))} different digits"
    for stride in (1, 2):
        for start in range(stride):
            run = longest = 1
            digits = hex_digits[start::stride]
            for before, after in zip(digits, digits[1:]):
                run = run + 1 if _HEX.index(after) == (_HEX.index(before) + 1) % 16 or (before, after) == ("9", "0") else 1
                longest = max(longest, run)
            if longest >= _LONGEST_STEP_RUN:
                return f"{longest} digits counting up" + (" at every other place" if stride == 2 else "")
    return None


def image_reference_problem(image: str) -> tuple[Optional[str], bool]:
    """(hard problem, moving) for a container image reference.

    A missing tag or `latest` is always wrong. Any other tag without a digest may move: a
    registry lets its owner push a new build under an old tag (`sam-master`, `sam-v1` and
    `1.0.0` alike), and only `@sha256:<digest>` names one build for good.
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ""
    if digest and not _DIGEST.match(digest):
        return "has a malformed digest; expected @sha256:<64 hex digits>", False
    if digest and (placeholder := placeholder_pattern(digest.removeprefix("sha256:"))):
        return (f"has a digest that looks made up ({placeholder}); expected the digest of the build you "
                "verified (docker buildx imagetools inspect)"), False
    if not tag and not digest:
        return "has no tag; expected repository:tag, pinned to a release", False
    if tag == "latest":
        return "uses the tag latest; expected a pinned tag", False
    return None, not digest


_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


def normalise_prefix(text: str) -> str:
    """`images/cats/` and `images/cats` name the same objects (consoles show the slash)."""
    return text.strip().rstrip("/")


def check_prefix(text: str) -> Optional[str]:
    segments = text.split("/")
    if (_S3_PREFIX.match(text) and not text.startswith("/") and "//" not in text
            and not any(segment in (".", "..") for segment in segments)):
        return None
    return "is not a key prefix; expected path segments like label-studio or images/cats, no leading '/' or ./.. segments"


def is_under(prefix: str, area: str) -> bool:
    """Whether objects under `prefix` include some under `area` or the other way round."""
    return prefix == "" or area == "" or prefix == area or prefix.startswith(area + "/") or area.startswith(prefix + "/")
