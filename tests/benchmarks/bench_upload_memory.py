"""Memory of one 255 MB upload through the real API view (issue 13, item 8). Target: under 100 MB per request.

The file is a 255 MiB Ophthalmic Tomography volume: 255 B-scans of 1024 x 512, 16 bits allocated, 12 stored (how
OCT devices export), written with the usual patient, study and device attributes. It exceeds the default pixel
budget (``VISUS_MAX_IMAGE_PIXELS``, 60 M samples; the volume has 134 M), so it is sent twice:

- ``accepted``: with ``VISUS_MAX_IMAGE_PIXELS=150000000`` (what a site that takes full-depth volumes sets): parsed,
  de-identified (the 12 stored bits masked), stored, previewed from its middle B-scan; answer 201;
- ``refused``: with the default budget: refused as ``too_many_pixels`` after its header is read; answer 400.

Each figure comes from a fresh child process: a throw-away embedded install (SQLite and media in a temporary
folder, as ``make run``), one small warm-up upload (imports, first queries), then the measured request, sent
through Django's WSGI handler with the multipart body read from a file on disk (as a web server hands it over), so
the only copies of the file in the process are the ones Visus makes. Two children per case, because tracemalloc's
own bookkeeping would inflate the RSS figure:

- RSS: the process's resident high-water mark during the request minus its resident size before (Linux
  ``/proc/self/clear_refs`` resets ``VmHWM``; everything C libraries allocate counts, numpy and pydicom included);
- Python: ``tracemalloc``'s peak of traced allocations during the request (numpy buffers included).

Run: ``make bench ARGS=bench_upload_memory`` (``--mb`` changes the size; a few minutes on a 2-core machine, most
of it building the install and the file).

Here (a shared 2-core machine, local media storage): accepted 4.1 MB RSS, 9.7 MB Python peak, 1.7 s; refused
0.2 MB and 0.4 MB, 0.6 s. Before streaming (the upload kept in memory, read whole, parsed whole by pydicom and
masked with numpy copies): accepted 1,876 MB RSS and 1,885 MB Python peak (9.4 s); refused 808 MB and 816 MB.
With S3 storage the multipart upload adds up to three 5 MiB parts (``settings.py``, ``test_upload_streaming``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_MB = 100.0
ROWS, COLUMNS = 1024, 512  # one B-scan: 1 MiB at 16 bits
ACCEPTING_BUDGET = "150000000"
BOUNDARY = "visusbenchboundary7d1f"


def write_oct(path: Path, frames: int, *, laterality: str = "R") -> None:
    """An OCT volume of ``frames`` 16-bit B-scans (12 bits stored, noise above them), written frame by frame."""
    import numpy as np
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from trials.uploads.deidentify_dicom import OCT

    raw = path.with_suffix(".raw")
    rng = np.random.default_rng(0)
    with raw.open("wb") as handle:
        for _ in range(frames):
            # Realistic values in the 12 stored bits, and garbage above them (the masking has work to do).
            handle.write(rng.integers(0, 65536, size=(ROWS, COLUMNS), dtype=np.uint16).tobytes())
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = OCT
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "DOE^JANE", "MRN00012345", "19610203", "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240315"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101112"
    ds.AcquisitionDateTime = "20240315101112"
    ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "ACC000123", "1", 1, 1
    ds.Modality = "OPT"
    ds.Manufacturer, ds.ManufacturerModelName = "Synthetic Optics", "OCT 3000"
    ds.InstitutionName, ds.StationName, ds.DeviceSerialNumber = "Example Eye Hospital", "OCT01", "SN0001"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-AA610", "SRT", "Retina"
    ds.AnatomicRegionSequence = Sequence([code])
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = OCT, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    with raw.open("rb") as pixels:
        ds.PixelData = pixels  # pydicom 3 writes a buffered value in chunks
        ds["PixelData"].VR = "OW"
        dcmwrite(path, ds, enforce_file_format=True)
    raw.unlink()


def write_body(upload: Path, body: Path) -> None:
    """The multipart/form-data request body a browser would send for ``upload`` (field ``file``)."""
    with body.open("wb") as out, upload.open("rb") as source:
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="volume.dcm"\r\n'
            "Content-Type: application/dicom\r\n\r\n".encode()
        )
        shutil.copyfileobj(source, out, 1024 * 1024)
        out.write(f"\r\n--{BOUNDARY}--\r\n".encode())


SETUP = """
import json
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from platform_core.accounts.services import api_token_issue
from tests.support.factories import TrialWorld
from trials.services import case_create
w = TrialWorld(modalities=("fundus", "oct", "visual_field"))
warm = case_create(actor=w.coord1, subject=w.subject1, laterality="OD", visit_day=30)
print(json.dumps({"token": api_token_issue(user=w.coord1), "case": str(w.case1.pk), "warm": str(warm.pk)}))
"""


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """One measured request in this fresh process; prints one JSON line."""
    import django

    django.setup()
    import tracemalloc

    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import reverse

    handler = WSGIHandler()

    def post(case: str, body: Path) -> tuple[str, dict]:
        url = reverse("api:trials:case-file-upload", args=[case])
        with body.open("rb") as stream:
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": url,
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "HTTP_HOST": "127.0.0.1",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_AUTHORIZATION": f"Token {args.token}",
                "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
                "CONTENT_LENGTH": str(body.stat().st_size),
                "wsgi.input": stream,
                "wsgi.errors": sys.stderr,
                "wsgi.url_scheme": "http",
                "wsgi.version": (1, 0),
                "wsgi.multithread": False,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
            answer: list[str] = []
            response = handler(environ, lambda status, headers, exc_info=None: answer.append(status))
            content = b"".join(response)
            response.close()
        return answer[0], json.loads(content or b"{}")

    status, _ = post(args.warm, Path(args.warm_body))
    if not status.startswith("201"):
        raise SystemExit(f"warm-up upload answered {status}")
    if args.tracemalloc:
        tracemalloc.start()
        start = time.perf_counter()
        status, body = post(args.case, Path(args.body))
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figure = {"python_peak": peak}
    else:
        rss_before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        start = time.perf_counter()
        status, body = post(args.case, Path(args.body))
        seconds = time.perf_counter() - start
        figure = {"rss_delta": _status("VmHWM") - rss_before, "rss_before": rss_before}
    code = body.get("outcome") or (body.get("error") or {}).get("code")
    print(json.dumps({**figure, "status": status, "code": code, "s": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=255, help="size of the uploaded volume in MiB (one B-scan each)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    for name in ("token", "case", "warm", "body", "warm-body"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    work = Path(tempfile.mkdtemp(prefix="visus-bench-upload-"))
    env = dict(os.environ)
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "AWS_STORAGE_BUCKET_NAME", "CACHE_URL"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "platform_core.settings",
            "DJANGO_ENV": "development",
            "VISUS_DATA_DIR": str(work / "data"),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "OMP_WAIT_POLICY": "PASSIVE",
            "TMPDIR": str(work),
        }
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", SETUP], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        )
        ids = json.loads(done.stdout.strip().splitlines()[-1])
        sys.path.insert(0, str(ROOT))
        write_oct(work / "volume.dcm", args.mb)
        write_oct(work / "warm.dcm", 4)
        write_body(work / "volume.dcm", work / "volume.body")
        write_body(work / "warm.dcm", work / "warm.body")
        size = (work / "volume.dcm").stat().st_size
        print(
            f"upload: {size / 2**20:.1f} MiB OCT volume, {args.mb} B-scans of {ROWS} x {COLUMNS}, 16 bits (12 stored), "
            "POST /api/v1/cases/<pk>/files/upload/ through Django's WSGI handler, a fresh process each; "
            f"target < {TARGET_MB:.0f} MB"
        )
        print(f"{'case':10} {'answer':28} {'RSS peak - before':>18} {'Python peak':>12} {'seconds':>8}")
        worst = 0.0
        for case, budget in (("accepted", ACCEPTING_BUDGET), ("refused", None)):
            case_env = dict(env)
            if budget:
                case_env["VISUS_MAX_IMAGE_PIXELS"] = budget
            figures: dict = {}
            for traced in (False, True):
                # Each run stores into a fresh case: reset to a fresh database copy so accepted is not a duplicate.
                command = [sys.executable, "-m", "tests.benchmarks.bench_upload_memory", "--child"]
                command += ["--token", ids["token"], "--case", ids["case"], "--warm", ids["warm"]]
                command += ["--body", str(work / "volume.body"), "--warm-body", str(work / "warm.body")]
                if traced:
                    command.append("--tracemalloc")
                snapshot = _snapshot(work / "data")
                try:
                    run = subprocess.run(command, env=case_env, cwd=ROOT, capture_output=True, text=True)
                finally:
                    _restore(work / "data", snapshot)
                if run.returncode != 0:
                    print(run.stderr[-3000:])
                    raise SystemExit(f"the {case} child failed")
                figures.update(json.loads(run.stdout.strip().splitlines()[-1]))
            rss = figures["rss_delta"] / 1e6
            worst = max(worst, rss, figures["python_peak"] / 1e6)
            answer = f"{figures['status'][:3]} {figures['code']}"
            print(f"{case:10} {answer:28} {rss:15.1f} MB {figures['python_peak'] / 1e6:9.1f} MB {figures['s']:8.1f}")
        verdict = "meets" if worst < TARGET_MB else "MISSES"
        print(f"worst figure {worst:.1f} MB per request: {verdict} the target of {TARGET_MB:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _snapshot(data: Path) -> Path:
    copy = data.with_name("data.snapshot")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(data, copy)
    return copy


def _restore(data: Path, snapshot: Path) -> None:
    shutil.rmtree(data, ignore_errors=True)
    snapshot.rename(data)


if __name__ == "__main__":
    main()
