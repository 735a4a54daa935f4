#!/usr/bin/env python3
"""A local stand-in for STS AssumeRole and for S3's checks of who signs and for which region.

STS (`POST /` with `Action=AssumeRole`): the request must be SigV4-signed (service `sts`) with the
base key; the role must be known and, when its trust policy requires an external id
(`sts:ExternalId`), the request must carry exactly that id, else STS's AccessDenied. An accepted
request gets temporary credentials (an `ASIA...` key, a secret and a session token, valid for an
hour) in STS's XML.

S3 (path-style `/bucket/key`): the request must be signed (service `s3`) by one of those
temporary keys with its session token (the base key is refused: the role is what may read the
bucket), for the bucket's own region (else S3's AuthorizationHeaderMalformed naming the expected
region). Accepted requests are re-signed with the upstream key and forwarded to the S3 server.
Signatures are recomputed independently with botocore's signer.

`GET /__verifier/stats` answers what it saw.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import awsverify
from awsverify import LOCK, Refused

ARGS = None
BASE = {}       # akid -> secret: keys that may call STS
ROLES = {}      # role arn -> required external id (or None)
REGIONS = {}    # bucket -> region
STATS = {"assumed": awsverify.ASSUMED, "s3_accepted": 0, "refused": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/xml", extra=()):
        data = body if isinstance(body, bytes) else body.encode()
        awsverify.respond(self, status, data, ctype, extra)

    def refuse(self, e, sts):
        with LOCK:
            STATS["refused"].append(f"{e.code}: {e.message}")
        if sts:
            body = awsverify.sts_error(e)
        else:
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{e.code}</Code>"
                    f"<Message>{e.message}</Message><RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>")
        self.reply(e.status, body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if path == "/__verifier/stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS), "application/json")
        sts = awsverify.is_assume_role(self.command, path, body)
        try:
            if sts:
                keys = {k: (v, None) for k, v in BASE.items()}
                akid, _ = awsverify.check_signature(self.command, path, query, headers, body, keys, "sts")
                form = dict(urllib.parse.parse_qsl(body.decode()))
                return self.reply(200, awsverify.assume_role(form, akid, ROLES))
            keys = awsverify.session_keys()
            _, region = awsverify.check_signature(self.command, path, query, headers, body, keys, "s3")
            bucket = path.lstrip("/").split("/", 1)[0]
            expected = REGIONS.get(bucket, ARGS.default_region)
            if region != expected:
                raise Refused(400, "AuthorizationHeaderMalformed",
                              f"The authorization header is malformed; the region '{region}' is wrong; "
                              f"expecting '{expected}'")
        except Refused as e:
            return self.refuse(e, sts)
        except (KeyError, ValueError) as e:
            return self.refuse(Refused(403, "AccessDenied", f"malformed authorization: {e}"), sts)
        with LOCK:
            STATS["s3_accepted"] += 1
        self.forward(path, query, body)

    def forward(self, path, query, body):
        akid, secret = ARGS.upstream_key.split(":", 1)
        keep = {k: v for k, v in self.headers.items()
                if k.lower() in ("range", "content-type", "if-match", "if-none-match")}
        url = ARGS.s3_upstream.rstrip("/") + path + ("?" + query if query else "")
        request = AWSRequest(method=self.command, url=url, headers=keep, data=body)
        S3SigV4Auth(Credentials(akid, secret), "s3", "us-east-1").add_auth(request)
        prepared = request.prepare()
        req = urllib.request.Request(prepared.url, data=body or None, method=self.command,
                                     headers=dict(prepared.headers))
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, data, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, data, hdrs = e.code, e.read(), e.headers
        extra = [(k, v) for k, v in hdrs.items()
                 if k.lower() in ("etag", "last-modified", "content-range", "accept-ranges")]
        self.reply(status, data, hdrs.get("Content-Type", "application/octet-stream"), extra)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--s3-upstream", required=True)
    p.add_argument("--upstream-key", required=True)
    p.add_argument("--base-key", action="append", required=True)
    p.add_argument("--role", action="append", default=[], help="ARN or ARN=EXTERNAL_ID")
    p.add_argument("--bucket-region", action="append", default=[], help="BUCKET=REGION")
    p.add_argument("--default-region", default="us-east-1")
    ARGS = p.parse_args()
    for k in ARGS.base_key:
        akid, secret = k.split(":", 1)
        BASE[akid] = secret
    for r in ARGS.role:
        arn, _, ext = r.partition("=")
        ROLES[arn] = ext or None
    for b in ARGS.bucket_region:
        bucket, region = b.split("=", 1)
        REGIONS[bucket] = region
    awsverify.serve(Handler)


if __name__ == "__main__":
    sys.exit(main())
