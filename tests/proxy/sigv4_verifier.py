#!/usr/bin/env python3
"""A local stand-in for the SigV4 check of Amazon OpenSearch Service and OpenSearch Serverless.

It recomputes each request's signature independently, with botocore's signer (not the code
under test), refuses what AWS refuses with AWS's texts, and forwards what it accepts to an
OpenSearch-compatible server. Checked, as AWS does
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html):
the access key is known, the credential scope names this region and service, `host` is
signed, `x-amz-date` is within 15 minutes, `x-amz-content-sha256` (required by `aoss`) is the
body's hash, a session token is present and signed when the key has one, and the signature
matches. With `--no-ids`, `_bulk` actions that carry an `_id` are refused per item the way an
OpenSearch Serverless time-series collection refuses them. With `--role ARN[=EXTERNAL_ID]` it
also answers STS AssumeRole (signed with a `--key`), and with `--role-only` it accepts requests
signed only by the temporary credentials of such a role (the domain's access policy names the
role, not the caller).

Usage: sigv4_verifier.py --upstream URL --service es|aoss --region R --key AKID:SECRET[:TOKEN]
Prints `listening on 127.0.0.1:PORT`; `GET /__verifier/stats` answers what it saw.
"""

import argparse
import datetime
import hashlib
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler

import awsverify
from awsverify import Refused

ARGS = None
KEYS = {}
ROLES = {}
STATS = {"accepted": 0, "refused": 0, "requests": [], "errors": [], "assumed": awsverify.ASSUMED}
LOCK = threading.Lock()
NO_ID = "Document ID is not supported in create/index operation request"


def refuse(message):
    raise PermissionError(message)


def verify(method, path, query, headers, body):
    try:
        akid, date, region, service, signed, signature = awsverify.authorization(headers)
    except Refused as e:
        refuse(e.message)
    keys = {} if ARGS.role_only else dict(KEYS)
    keys.update(awsverify.session_keys())
    if akid not in keys:
        refuse("The security token included in the request is invalid.")
    if region != ARGS.region:
        refuse(f"Credential should be scoped to a valid region, not '{region}'.")
    if service != ARGS.service:
        refuse(f"Credential should be scoped to correct service: '{ARGS.service}'.")
    if "host" not in signed:
        refuse("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        refuse("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if date != amz_date[:8]:
        refuse("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP")
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    if skew > 15 * 60:
        refuse("Signature expired")
    digest = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None and ARGS.service == "aoss":
        refuse("Missing x-amz-content-sha256 header: OpenSearch Serverless requires it")
    if claimed is not None and claimed != digest:
        refuse("The provided 'x-amz-content-sha256' header does not match what was computed.")
    secret, token = keys[akid]
    if token is not None:
        if headers.get("x-amz-security-token") != token:
            refuse("The security token included in the request is invalid.")
        if "x-amz-security-token" not in signed:
            refuse("x-amz-security-token must be signed")
    expected = awsverify.expected_signature(method, path, query, headers, body, akid, secret,
                                            token, service, region, signed)
    if expected != signature:
        refuse("The request signature we calculated does not match the signature you provided. "
               "Check your AWS Secret Access Key and signing method.")


def answer_sts(handler, path, query, headers, body):
    """STS AssumeRole, signed by one of the base keys."""
    try:
        akid, _ = awsverify.check_signature("POST", path, query, headers, body, KEYS, "sts")
        form = dict(urllib.parse.parse_qsl(body.decode()))
        return handler.answer(200, awsverify.assume_role(form, akid, ROLES).encode(), "text/xml")
    except Refused as e:
        with LOCK:
            STATS["refused"] += 1
            STATS["errors"].append(e.message)
        return handler.answer(e.status, awsverify.sts_error(e).encode(), "text/xml")


def refuse_ids(body):
    """The answer of a time-series collection to a `_bulk` whose actions carry `_id`s."""
    lines = [l for l in body.split(b"\n") if l.strip()]
    items, any_id = [], False
    for action in lines[0::2]:
        (op, meta), = json.loads(action).items()
        if "_id" in meta:
            any_id = True
            items.append({op: {"_index": meta.get("_index"), "_id": meta["_id"], "status": 400,
                               "error": {"type": "illegal_argument_exception", "reason": NO_ID}}})
        else:
            items.append({op: {"_index": meta.get("_index"), "status": 201}})
    return any_id, {"took": 0, "errors": True, "items": items}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        awsverify.respond(self, status, data, content_type)

    def handle_any(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path == "/__verifier/stats":
            with LOCK:
                return self.answer(200, STATS)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if ROLES and awsverify.is_assume_role(self.command, path, body):
            return answer_sts(self, path, query, headers, body)
        try:
            verify(self.command, path, query, headers, body)
        except PermissionError as e:
            with LOCK:
                STATS["refused"] += 1
                STATS["errors"].append(str(e))
            return self.answer(403, {"message": str(e)})
        except (KeyError, ValueError) as e:
            with LOCK:
                STATS["refused"] += 1
                STATS["errors"].append(f"malformed authorization: {e}")
            return self.answer(403, {"message": "Authorization header is malformed"})
        with LOCK:
            STATS["accepted"] += 1
            STATS["requests"].append(f"{self.command} {path}")
        if ARGS.service == "aoss" and self.command == "GET" and path == "/":
            return self.answer(404, {"message": "Not Found"})
        if ARGS.no_ids and path.endswith("/_bulk"):
            plain = body
            if headers.get("content-encoding") == "gzip":
                import gzip
                plain = gzip.decompress(body)
            any_id, refusal = refuse_ids(plain)
            if any_id:
                return self.answer(200, refusal)
        forward = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "content-encoding", "accept")}
        url = ARGS.upstream.rstrip("/") + self.path
        req = urllib.request.Request(url, data=body if body else None, method=self.command,
                                     headers=forward)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        except OSError as e:
            return self.answer(502, {"message": f"upstream: {e}"})
        self.answer(status, data, ctype or "application/json")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--key", action="append", required=True)
    p.add_argument("--no-ids", action="store_true")
    p.add_argument("--role", action="append", default=[], help="ARN or ARN=EXTERNAL_ID")
    p.add_argument("--role-only", action="store_true")
    ARGS = p.parse_args()
    for r in ARGS.role:
        arn, _, ext = r.partition("=")
        ROLES[arn] = ext or None
    KEYS.update(awsverify.parse_keys(ARGS.key))
    awsverify.serve(Handler)


if __name__ == "__main__":
    sys.exit(main())
