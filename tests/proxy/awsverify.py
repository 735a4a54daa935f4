"""What the AWS stand-ins in this directory share: recomputing a SigV4 signature independently
with botocore's signer, and STS AssumeRole (the role known, the external id its trust policy
requires, temporary credentials in STS's XML).

Imported by `sigv4_verifier.py` and `sts_s3_verifier.py` (Python puts a script's directory on
its path).
"""

import datetime
import secrets
import threading
import urllib.parse
import uuid

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
LOCK = threading.Lock()
SESSIONS = {}   # temporary akid -> (secret, token, role, external id, session name)
ASSUMED = []    # {"role", "external_id", "session"} of every role handed out


class Refused(Exception):
    """A request AWS would refuse: the HTTP status, the error code and AWS's message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def authorization(headers):
    """The parts of a SigV4 `Authorization` header: (akid, date, region, service, signed, sig)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        raise Refused(403, "AccessDenied", "Missing Authentication Token")
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    akid, date, region, service, terminal = parts["Credential"].split("/")
    if terminal != "aws4_request":
        raise Refused(403, "SignatureDoesNotMatch",
                      "Credential should be scoped with a valid terminator: 'aws4_request'.")
    return akid, date, region, service, parts["SignedHeaders"].split(";"), parts["Signature"]


def expected_signature(method, path, query, headers, body, akid, secret, token, service, region,
                       signed):
    """The signature botocore computes for the request as received."""
    request = AWSRequest(method=method, url="http://" + headers.get("host", "") + path,
                         headers={h: headers.get(h, "") for h in signed}, data=body,
                         params=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)))
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer_cls = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = signer_cls(Credentials(akid, secret, token), service, region)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def session_keys():
    """akid -> (secret, token) of every temporary key handed out."""
    with LOCK:
        return {k: (v[0], v[1]) for k, v in SESSIONS.items()}


def assume_role(form, caller, roles):
    """STS AssumeRole's answer for `form`, or Refused; `roles` maps ARN -> required external id."""
    role = form.get("RoleArn", "")
    wanted = roles.get(role, "<unknown role>")
    if role not in roles or (wanted is not None and form.get("ExternalId") != wanted):
        raise Refused(403, "AccessDenied",
                      f"User: arn:aws:iam::111111111111:user/{caller} is not authorized to perform: "
                      f"sts:AssumeRole on resource: {role}")
    session = form.get("RoleSessionName", "")
    akid = "ASIA" + secrets.token_hex(8).upper()
    secret, token = secrets.token_hex(20), secrets.token_hex(40)
    expires = (datetime.datetime.now(datetime.timezone.utc)
               + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with LOCK:
        SESSIONS[akid] = (secret, token, role, form.get("ExternalId"), session)
        ASSUMED.append({"role": role, "external_id": form.get("ExternalId"), "session": session})
    name = role.split("/")[-1]
    return (f'<AssumeRoleResponse xmlns="{STS_NS}"><AssumeRoleResult><Credentials>'
            f"<AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:{session}</AssumedRoleId>"
            f"<Arn>arn:aws:sts::{role.split(':')[4]}:assumed-role/{name}/{session}</Arn></AssumedRoleUser>"
            f"</AssumeRoleResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            f"</ResponseMetadata></AssumeRoleResponse>")


def sts_error(e):
    """STS's XML for a refusal."""
    return (f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{e.code}</Code>'
            f"<Message>{e.message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


def is_assume_role(method, path, body):
    """Whether a request is STS's AssumeRole (Query protocol, form-encoded body)."""
    return method == "POST" and path == "/" and b"Action=AssumeRole" in body


def check_signature(method, path, query, headers, body, keys, service):
    """(akid, region) of a valid signature by one of `keys` (akid -> (secret, token)) for
    `service`, or Refused with AWS's code and message."""
    akid, _, region, svc, signed, signature = authorization(headers)
    if akid not in keys:
        raise Refused(403, "InvalidAccessKeyId" if service == "s3" else "InvalidClientTokenId",
                      "The AWS Access Key Id you provided does not exist in our records.")
    if svc != service:
        raise Refused(403, "SignatureDoesNotMatch",
                      f"Credential should be scoped to correct service: '{service}'.")
    secret, token = keys[akid]
    if token is not None and headers.get("x-amz-security-token") != token:
        raise Refused(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
    expected = expected_signature(method, path, query, headers, body, akid, secret, token,
                                  service, region, signed)
    if expected != signature:
        raise Refused(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")
    return akid, region


def respond(handler, status, data, content_type, extra=()):
    """Writes one HTTP answer on a BaseHTTPRequestHandler (no body for HEAD)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    for k, v in extra:
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def parse_keys(specs):
    """akid -> (secret, token or None) from `AKID:SECRET[:TOKEN]` command-line values."""
    keys = {}
    for k in specs:
        akid, secret, *token = k.split(":", 2)
        keys[akid] = (secret, token[0] if token else None)
    return keys


def serve(handler_cls):
    """Serves on a free loopback port; prints `listening on 127.0.0.1:PORT` first (the tests
    read it) and never returns."""
    from http.server import ThreadingHTTPServer
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
