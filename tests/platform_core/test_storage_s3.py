"""Object storage against a real S3 server (SeaweedFS started by make test with an identity file)."""

import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from django.core.files.base import ContentFile
from django.test import SimpleTestCase, tag

from tests.support import require_service


def s3_options(**overrides):
    options = {
        "bucket_name": os.environ.get("AWS_STORAGE_BUCKET_NAME", ""),
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL", ""),
        "region_name": "us-east-1",
        "addressing_style": "path",
        "signature_version": "s3v4",
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,
        "file_overwrite": False,
    }
    options.update(overrides)
    return options


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def require_s3() -> None:
    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL", "")
    detail = "set AWS_S3_ENDPOINT_URL, AWS_STORAGE_BUCKET_NAME and keys (make test starts SeaweedFS)"
    reachable = False
    if endpoint:
        try:
            status, _ = http_get(endpoint + "/")
            reachable = status in (200, 403)
        except OSError as exc:
            detail = f"{endpoint} unreachable: {exc}"
    require_service("S3 (SeaweedFS)", reachable, detail)


def ensure_bucket(options) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["access_key"],
        aws_secret_access_key=options["secret_key"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if options["bucket_name"] not in existing:
        client.create_bucket(Bucket=options["bucket_name"])


@tag("s3")
class S3StorageTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_s3()
        ensure_bucket(s3_options())

    def storage(self, **overrides):
        from storages.backends.s3 import S3Storage

        return S3Storage(**s3_options(**overrides))

    def test_write_read_and_delete(self):
        storage = self.storage()
        name = storage.save(f"tests/{uuid.uuid4().hex}.bin", ContentFile(b"fundus bytes \x00\x01"))
        self.assertTrue(storage.exists(name))
        with storage.open(name, "rb") as handle:
            self.assertEqual(handle.read(), b"fundus bytes \x00\x01")
        self.assertEqual(storage.size(name), 15)
        storage.delete(name)
        self.assertFalse(storage.exists(name))

    def test_existing_names_are_never_overwritten(self):
        storage = self.storage()
        first = storage.save("tests/same-name.txt", ContentFile(b"one"))
        second = storage.save("tests/same-name.txt", ContentFile(b"two"))
        self.addCleanup(storage.delete, first)
        self.addCleanup(storage.delete, second)
        self.assertNotEqual(first, second)
        with storage.open(first) as handle:
            self.assertEqual(handle.read(), b"one")

    def test_objects_are_private_without_a_signature(self):
        storage = self.storage()
        name = storage.save(f"tests/{uuid.uuid4().hex}.txt", ContentFile(b"private"))
        self.addCleanup(storage.delete, name)
        unsigned = self.storage(querystring_auth=False).url(name)
        status, _ = http_get(unsigned)
        self.assertEqual(status, 403)

    def test_presigned_url_works_until_it_expires(self):
        storage = self.storage(querystring_expire=2)
        name = storage.save(f"tests/{uuid.uuid4().hex}.txt", ContentFile(b"presigned content"))
        self.addCleanup(storage.delete, name)
        url = storage.url(name)
        self.assertEqual(http_get(url), (200, b"presigned content"))
        time.sleep(3.5)
        status, body = http_get(url)
        self.assertEqual(status, 403, body[:200])

    def test_tampered_presigned_urls_are_refused(self):
        storage = self.storage()
        name = storage.save(f"tests/{uuid.uuid4().hex}.txt", ContentFile(b"secret"))
        other = storage.save(f"tests/{uuid.uuid4().hex}.txt", ContentFile(b"other"))
        self.addCleanup(storage.delete, name)
        self.addCleanup(storage.delete, other)
        url = storage.url(name)
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))

        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        forged_signature = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        self.assertEqual(http_get(forged_signature)[0], 403)

        other_path = parts.path.rsplit("/", 1)[0] + "/" + other.rsplit("/", 1)[1]
        self.assertEqual(http_get(urllib.parse.urlunsplit(parts._replace(path=other_path)))[0], 403)

        query = dict(urllib.parse.parse_qsl(parts.query))
        query["X-Amz-Expires"] = "604800"
        longer = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        self.assertEqual(http_get(longer)[0], 403)

    def test_forged_credentials_are_refused(self):
        from botocore.exceptions import ClientError

        storage = self.storage(secret_key="not-the-real-secret")
        with self.assertRaises(ClientError) as caught:
            storage.save(f"tests/{uuid.uuid4().hex}.txt", ContentFile(b"x"))
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        url = storage.url("tests/anything.txt")
        self.assertEqual(http_get(url)[0], 403)
