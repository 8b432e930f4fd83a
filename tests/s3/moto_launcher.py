"""Starts moto's S3 server (the tests' stand-in for MinIO) with one fix.

moto checks an S3 request's SigV4 signature against the query string it has already
decoded (getmoto/moto#5948), so terraform's `ListObjectsV2 ... prefix=env%3A%2F` fails
with SignatureDoesNotMatch even with the right key. This launcher hands moto's check the
query string exactly as the client sent it, then runs `moto_server` with the given
arguments (`-H 127.0.0.1 -p PORT`).
"""

import sys
from urllib.parse import urlparse, urlunparse

from moto.core import authorization
from moto.server import main

_check = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def _check_with_raw_query(self, iam_request_cls, resource="*"):
    request = getattr(self, "request", None)
    environ = getattr(request, "environ", None) or {}
    raw = environ.get("QUERY_STRING")
    if raw is None:
        return _check(self, iam_request_cls, resource)
    decoded = self.uri
    self.uri = urlunparse(urlparse(decoded)._replace(query=raw))
    try:
        return _check(self, iam_request_cls, resource)
    finally:
        self.uri = decoded


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _check_with_raw_query

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
