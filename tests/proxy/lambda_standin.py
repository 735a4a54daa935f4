#!/usr/bin/env python3
"""A local stand-in for AWS Lambda's Invoke API, running Firehose-style record transformations.

It answers `POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=...]` the way
Lambda does (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), with a few scripted
functions that receive Firehose's data-transformation event and answer its records
(https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html).

Checked, as Lambda does: the request is SigV4-signed (service `lambda`) by a known key, for this
region, and the signature, recomputed independently with botocore's signer over the path as it
arrived (percent-encoded; AWS encodes each path segment again when signing for every service but
S3: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), matches;
`X-Amz-Invocation-Type` is absent or `RequestResponse` (the only type a record transformation
uses); the payload is at most 6 MB (6291456 bytes, the synchronous invocation limit:
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); the function exists.
Refusals use Lambda's REST-JSON errors (status, `X-Amzn-ErrorType`, `{"Type", "message"}`:
https://docs.aws.amazon.com/lambda/latest/api/CommonErrors.html). An error raised by the function
is a 200 with `X-Amz-Function-Error: Unhandled` and `{"errorMessage", "errorType",
"stackTrace"}` (https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html).

The functions validate the event's shape strictly (a missing or mistyped key, data that is not
base64, a timestamp in seconds rather than milliseconds are function errors). Firehose rejects an
answer whose record ids or count differ from the event's; `wrong-id` and `omit-last` answer so,
to check the caller does too. Functions, by name (each record's data is one JSON object):
enrich (adds `"enriched": true`), drop-debug (`"level": "debug"` -> Dropped), fail-bad
(`"bad": true` -> ProcessingFailed), wrong-id, omit-last, unhandled (always a function error),
slow (sleeps `--slow-s` first), flaky (the first invocation fails), split (an `items` array ->
one JSON line per item).

Usage: lambda_standin.py --region R --key AKID:SECRET[:TOKEN] [--slow-s SECONDS]
Prints `listening on 127.0.0.1:PORT`; `GET /__verifier/stats` answers what it saw (`max_bytes`
counts every signed invocation body, a refused oversized one too).
"""

import argparse
import base64
import binascii
import json
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler

import awsverify
from awsverify import Refused

ARGS = None
KEYS = {}       # akid -> (secret, token)
LOCK = threading.Lock()
ACCOUNT = "123456789012"
MAX_PAYLOAD = 6291456
INVOKE = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")
# FunctionName as the Invoke API page allows it: a name, a partial ARN or an ARN, and a qualifier.
FUNCTION_NAME = re.compile(r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d:)?"
                           r"(\d{12}:)?(function:)?([a-zA-Z0-9_.-]+)(:(\$LATEST|[a-zA-Z0-9_-]+))?")
STATS = {"invocations": 0, "refused": 0, "by_function": {}, "records": 0, "max_records": 0,
         "max_bytes": 0, "arns": set(), "regions": set(), "errors": [], "record_ids": []}
LAMBDA_CODES = {"AccessDenied": "MissingAuthenticationTokenException",
                "InvalidClientTokenId": "UnrecognizedClientException",
                "InvalidToken": "UnrecognizedClientException",
                "SignatureDoesNotMatch": "InvalidSignatureException"}
BAD_TOKEN = "The security token included in the request is invalid."
BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. "
                 "Check your AWS Secret Access Key and signing method. "
                 "Consult the service documentation for details.")


class FunctionError(Exception):
    """An error raised inside the function: Lambda answers it as `Unhandled`."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type, self.message = error_type, message


def note_error(message, refused):
    with LOCK:
        STATS["refused"] += refused
        if len(STATS["errors"]) < 50:
            STATS["errors"].append(message)


def check(path, query, headers, body):
    """Refused, with Lambda's code and message, unless a known key signed for this region."""
    try:
        akid, _, region, _, _, _ = awsverify.authorization(headers)
        if akid not in KEYS:
            raise Refused(403, "UnrecognizedClientException", BAD_TOKEN)
        if region != ARGS.region:
            raise Refused(403, "InvalidSignatureException",
                          "Credential should be scoped to a valid region.")
        awsverify.check_signature("POST", path, query, headers, body, KEYS, "lambda")
    except (KeyError, ValueError):
        raise Refused(400, "IncompleteSignatureException",
                      "Authorization header requires 'Credential', 'Signature' and "
                      "'SignedHeaders' parameters.") from None
    except Refused as e:
        code = LAMBDA_CODES.get(e.code, e.code)
        message = {"UnrecognizedClientException": BAD_TOKEN}.get(code, e.message)
        if message.startswith("The request signature we calculated"):
            message = BAD_SIGNATURE
        raise Refused(e.status, code, message) from None


def field(obj, key, kind, where):
    """obj[key], which must be a `kind`, else the function's KeyError or ValueError."""
    if key not in obj:
        raise FunctionError("KeyError", f"event has no {where}{key}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FunctionError("ValueError", f"event {where}{key} is a {type(value).__name__}, "
                                          f"expected {kind.__name__}")
    return value


def event_records(event):
    """[(where, recordId, data bytes)] of a Firehose data-transformation event, strictly checked."""
    if not isinstance(event, dict):
        raise FunctionError("ValueError", f"event is a {type(event).__name__}, not an object")
    for key in ("invocationId", "deliveryStreamArn", "region"):
        field(event, key, str, "")
    records = field(event, "records", list, "")
    if not records:
        raise FunctionError("ValueError", "event records is empty")
    out = []
    for i, record in enumerate(records):
        where = f"records[{i}]."
        if not isinstance(record, dict):
            raise FunctionError("ValueError", f"event records[{i}] is not an object")
        rid = field(record, "recordId", str, where)
        if field(record, "approximateArrivalTimestamp", int, where) < 10 ** 11:
            raise FunctionError("ValueError", f"event {where}approximateArrivalTimestamp is in "
                                              "seconds, not milliseconds")
        try:
            data = base64.b64decode(field(record, "data", str, where), validate=True)
        except binascii.Error as e:
            raise FunctionError("ValueError", f"event {where}data is not valid base64: {e}") from None
        out.append((where, rid, data))
    return out


def parse(data, where):
    """The one JSON object a record's data holds."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise FunctionError("ValueError", f"event {where}data is not one JSON object")
    return obj


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def answer(rid, data, result="Ok"):
    return {"recordId": rid, "result": result, "data": base64.b64encode(data).decode()}


def enrich(records, _nth):
    return [answer(rid, compact({**parse(data, w), "enriched": True}) + b"\n")
            for w, rid, data in records]


def drop_debug(records, _nth):
    return [answer(rid, data, "Dropped" if parse(data, w).get("level") == "debug" else "Ok")
            for w, rid, data in records]


def fail_bad(records, _nth):
    return [answer(rid, data, "ProcessingFailed" if parse(data, w).get("bad") is True else "Ok")
            for w, rid, data in records]


def wrong_id(records, nth):
    out = enrich(records, nth)
    out[0]["recordId"] = "no-such-id"
    return out


def unhandled(_records, _nth):
    raise FunctionError("RuntimeError", "boom")


def slow(records, nth):
    time.sleep(ARGS.slow_s)
    return enrich(records, nth)


def flaky(records, nth):
    if nth == 1:
        raise FunctionError("RuntimeError", "flaky: the first invocation fails")
    return enrich(records, nth)


def split(records, _nth):
    out = []
    for w, rid, data in records:
        obj = parse(data, w)
        if isinstance(obj.get("items"), list):
            data = b"".join(compact({"id": obj.get("id"), "item": item}) + b"\n"
                            for item in obj["items"])
        out.append(answer(rid, data))
    return out


FUNCTIONS = {"enrich": enrich, "drop-debug": drop_debug, "fail-bad": fail_bad,
             "wrong-id": wrong_id, "omit-last": lambda r, n: enrich(r, n)[:-1],
             "unhandled": unhandled, "slow": slow, "flaky": flaky, "split": split}


def invoke(name, body):
    """(headers, answer) of one accepted invocation of `name` with the JSON `body`."""
    with LOCK:
        STATS["invocations"] += 1
        nth = STATS["by_function"][name] = STATS["by_function"].get(name, 0) + 1
    executed = ("X-Amz-Executed-Version", "$LATEST")
    try:
        event = json.loads(body)
        records = event_records(event)
        with LOCK:
            STATS["records"] += len(records)
            STATS["max_records"] = max(STATS["max_records"], len(records))
            STATS["arns"].add(event["deliveryStreamArn"])
            STATS["regions"].add(event["region"])
            room = 10000 - len(STATS["record_ids"])
            STATS["record_ids"].extend(rid for _, rid, _ in records[:max(room, 0)])
        return [executed], {"records": FUNCTIONS[name](records, nth)}
    except FunctionError as e:
        note_error(f"{name}: {e.error_type}: {e.message}", 0)
        return ([executed, ("X-Amz-Function-Error", "Unhandled")],
                {"errorMessage": e.message, "errorType": e.error_type, "stackTrace": []})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, extra=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = [("X-Amzn-RequestId", str(uuid.uuid4()))] + list(extra)
        try:
            awsverify.respond(self, status, data, "application/json", extra)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (`slow`)
            self.close_connection = True

    def handle_any(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if self.command == "GET" and path == "/__verifier/stats":
            with LOCK:
                stats = {**STATS, "arns": sorted(STATS["arns"]),
                         "regions": sorted(STATS["regions"])}
                return self.answer(200, json.dumps(stats).encode())
        match = INVOKE.fullmatch(path)
        try:
            if self.command != "POST" or not match:
                raise Refused(404, "UnknownOperationException",
                              f"Unknown operation: {self.command} {path}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            check(path, query, headers, body)
            with LOCK:
                STATS["max_bytes"] = max(STATS["max_bytes"], len(body))
            kind = headers.get("x-amz-invocation-type", "RequestResponse")
            if kind != "RequestResponse":
                raise Refused(400, "InvalidParameterValueException",
                              f"A record transformation invokes with RequestResponse, not {kind!r}")
            if len(body) > MAX_PAYLOAD:
                raise Refused(413, "RequestEntityTooLargeException",
                              f"Request must be smaller than {MAX_PAYLOAD} bytes for the "
                              "InvokeFunction operation")
            raw = urllib.parse.unquote(match.group(1))
            name = m.group(7) if (m := FUNCTION_NAME.fullmatch(raw)) else raw
            if name not in FUNCTIONS:
                raise Refused(404, "ResourceNotFoundException", f"Function not found: "
                              f"arn:aws:lambda:{ARGS.region}:{ACCOUNT}:function:{name}")
            try:
                json.loads(body)
            except ValueError as e:
                raise Refused(400, "InvalidRequestContentException",
                              f"Could not parse request body into json: {e}") from None
        except Refused as e:
            note_error(f"{e.code}: {e.message}", 1)
            return self.answer(e.status, {"Type": "User", "message": e.message},
                               [("X-Amzn-ErrorType", e.code)])
        extra, result = invoke(name, body)
        self.answer(200, result, extra)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--region", required=True)
    p.add_argument("--key", action="append", required=True, help="AKID:SECRET[:TOKEN]")
    p.add_argument("--slow-s", type=float, default=5.0, help="how long `slow` sleeps")
    ARGS = p.parse_args()
    KEYS.update(awsverify.parse_keys(ARGS.key))
    awsverify.serve(Handler)


if __name__ == "__main__":
    sys.exit(main())
