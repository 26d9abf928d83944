"""What tests find in, and clean out of, the default storage (local disk or S3): storage is not rolled back
with the test's transaction."""

from __future__ import annotations

from django.core.files.storage import default_storage


def stored_names(prefix: str = "cases") -> set[str]:
    """Every object under ``prefix`` in the default storage (local disk or S3)."""
    names: set[str] = set()

    def walk(path: str) -> None:
        try:
            dirs, files = default_storage.listdir(path)
        except FileNotFoundError:
            return
        names.update(f"{path}/{f}" for f in files)
        for d in dirs:
            walk(f"{path}/{d}")

    walk(prefix)
    return names


def fetch(response) -> bytes:
    """The bytes behind an authorised file view: streamed from disk, or via S3's presigned redirect."""
    if response.status_code == 302:
        import urllib.request

        location = response["Location"]
        assert "X-Amz-Signature=" in location, location
        with urllib.request.urlopen(location, timeout=10) as handle:  # noqa: S310 - loopback S3 in tests
            return handle.read()
    assert response.status_code == 200, response.status_code
    return b"".join(response.streaming_content)


def delete_stored_models_and_case_files() -> None:
    """Test clean-up: the weights and case files the test's rows point to (storage is not rolled back)."""
    from diagnosis.models import ModelVersion
    from trials.models import CaseFile

    for model in ModelVersion.objects.all():
        default_storage.delete(model.weights.name)
    for case_file in CaseFile.objects.all():
        for name in (case_file.content.name, case_file.preview.name, case_file.thumbnail.name):
            if name:
                default_storage.delete(name)
