"""Throughput of DICOM de-identification: Visus's pipeline next to dicognito on the same files, in one run.

Run on demand (not a unit test):

    .venv/bin/python -m tests.benchmarks.bench_deidentify [--files 200] [--rounds 3]

Needs ``dicognito`` (benchmark-only dependency, pinned in requirements-bench.txt). Every pipeline starts from the
same in-memory bytes and ends with the serialised bytes: parse, de-identify, write. "read+write" is pydicom alone
(the floor any pydicom-based tool sits on). Figures are the best of ``--rounds`` rounds: wall-clock files/s and
process CPU ms per file. Note that dicognito does less work: it keeps private tags and free-text descriptions.

Then the burned-in text gate for photographs (``trials.uploads.burned_in_text``): median wall-clock ms per shipped
HRF photograph with and without it (and Tesseract's CPU), false refusals of those real photographs (as shipped and
letterboxed to 4:3), the stamped words it finds and each one it misses, and the outcome for a photograph of noise.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from trials.uploads.deidentify_dicom import OP_8_BIT, DeidentifyOptions, deidentify_dicom

SIDE = 512


def synthetic_photograph(index: int, pixels: bytes) -> bytes:
    """A 512x512 RGB Ophthalmic Photography 8 Bit file with the usual patient/study/equipment attributes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = OP_8_BIT
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = f"DOE^JANE^{index}"
    ds.PatientID = f"MRN{index:08d}"
    ds.PatientBirthDate = "19610203"
    ds.PatientSex = "F"
    ds.PatientAge = "063Y"
    ds.OtherPatientIDs = f"OTHER{index:06d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240315"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101112"
    ds.AcquisitionDateTime = "20240315101112"
    ds.AccessionNumber = f"ACC{index:06d}"
    ds.StudyID = "1"
    ds.Modality = "OP"
    ds.Manufacturer = "Synthetic Optics"
    ds.ManufacturerModelName = "Fundus 3000"
    ds.InstitutionName = "Example Eye Hospital"
    ds.ReferringPhysicianName = "SMITH^JOHN"
    ds.OperatorsName = "TECH^ONE"
    ds.StationName = "CAM01"
    ds.DeviceSerialNumber = "SN0001"
    ds.StudyDescription = "Fundus photography"
    ds.SeriesDescription = "Colour fundus"
    ds.ImageLaterality = "R"
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    block = ds.private_block(0x0009, "VENDOR X", create=True)
    block.add_new(0x01, "LO", "private value")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-AA610", "SRT", "Retina"
    ds.AnatomicRegionSequence = Sequence([code])
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def read_write(data: bytes) -> bytes:
    ds = dcmread(io.BytesIO(data))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_visus() -> Callable[[bytes], bytes]:
    options = DeidentifyOptions(
        uid_key=os.urandom(32),
        subject_pseudonym="SUBJ-0001",
        sponsor_name="Bench Sponsor",
        protocol_id="BENCH-01",
        site_id="S01",
        time_point_id="BASELINE",
    )
    return lambda data: deidentify_dicom(data, options=options).data


def make_dicognito() -> Callable[[bytes], bytes]:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()  # one per set, as dicognito recommends, so UIDs stay consistent within the run

    def run(data: bytes) -> bytes:
        ds = dcmread(io.BytesIO(data))
        anonymizer.anonymize(ds)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    return run


def measure(fn: Callable[[bytes], bytes], files: list[bytes], rounds: int) -> tuple[float, float]:
    for data in files[:5]:  # warm caches and lazy imports
        fn(data)
    best_rate, best_cpu = 0.0, float("inf")
    for _ in range(rounds):
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for data in files:
            fn(data)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        best_rate = max(best_rate, len(files) / wall)
        best_cpu = min(best_cpu, 1000.0 * cpu / len(files))
    return best_rate, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ocr", action="store_true", help="leave out the burned-in text figures (slow)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8).tobytes()
    files = [synthetic_photograph(i, pixels) for i in range(args.files)]
    pipelines: list[tuple[str, Callable[[bytes], bytes]]] = [("read+write (pydicom only)", read_write)]
    pipelines.append(("visus deidentify_dicom", make_visus()))
    try:
        import dicognito

        pipelines.append((f"dicognito {dicognito.__version__}", make_dicognito()))
    except ImportError:
        print("dicognito is not installed: .venv/bin/pip install -r requirements-bench.txt")

    print(
        f"{len(files)} synthetic {SIDE}x{SIDE} RGB Ophthalmic Photography files, {len(files[0]) // 1024} KiB each; "
        f"pydicom {pydicom.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"best of {args.rounds} rounds"
    )
    print(f"{'pipeline':32} {'files/s':>9} {'CPU ms/file':>12}")
    results = {}
    for name, fn in pipelines:
        rate, cpu = measure(fn, files, args.rounds)
        results[name] = rate
        print(f"{name:32} {rate:9.1f} {cpu:12.2f}")
    ours = results["visus deidentify_dicom"]
    print(f"visus is {ours / results['read+write (pydicom only)']:.2f}x pydicom's own read+write")
    for name, rate in results.items():
        if name.startswith("dicognito"):
            verdict = "at least as fast as" if ours >= rate else "SLOWER than"
            print(f"visus is {verdict} {name} ({ours / rate:.2f}x)")
    if not args.skip_ocr:
        print()
        burned_in_text_figures()


def burned_in_text_figures() -> None:
    """Cost and accuracy of the burned-in text gate on the shipped HRF photographs (1024 x 683 JPEG): median ms per
    photograph with and without it, the real photographs it refuses (false refusals), the stamped words it misses,
    letterboxed copies, and a photograph of noise (refused when the OCR budget runs out)."""
    import resource
    import statistics
    from pathlib import Path

    from PIL import Image, ImageDraw, ImageFont

    from trials.uploads.burned_in_text import OCR_BUDGET_S, blank_outside_field, find_field_of_view, find_text
    from trials.uploads.deidentify_image import deidentify_image
    from trials.uploads.errors import UploadRejected

    def encode(img: Image.Image) -> bytes:
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=92)
        return out.getvalue()

    def child_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    hrf = Path(__file__).resolve().parents[2] / "demo" / "data" / "hrf"
    paths = sorted(hrf.glob("*.jpg"))
    photographs = [p.read_bytes() for p in paths]
    print(f"burned-in text gate, {len(photographs)} HRF photographs 1024x683 (load average {os.getloadavg()[0]:.1f})")
    medians, cpu_medians = {}, {}
    for checked in (False, True):
        walls, cpus, refused = [], [], []
        tesseract0 = child_cpu()
        for path, data in zip(paths, photographs, strict=True):
            start, cpu0, child0 = time.perf_counter(), time.process_time(), child_cpu()
            try:
                deidentify_image(data, check_burned_in_text=checked)
            except UploadRejected:
                refused.append(path.name)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu0 + child_cpu() - child0)
        medians[checked], cpu_medians[checked] = statistics.median(walls), statistics.median(cpus)
        if checked:
            tesseract = (child_cpu() - tesseract0) / len(photographs)
    # On a shared machine the wall clock waits for the cores; the CPU time (this process and Tesseract) does not.
    for checked, label in ((False, "without the gate"), (True, "with the gate   ")):
        print(
            f"  {label} {1000 * medians[checked]:7.0f} ms/photograph wall, {1000 * cpu_medians[checked]:5.0f} ms CPU "
            "(medians; the gate: field fit, blanking, candidates, OCR of crops)"
        )
    print(f"  Tesseract CPU    {1000 * tesseract:7.0f} ms/photograph (mean, child processes)")
    print(f"  false refusals (real photographs refused): {len(refused)} of {len(photographs)} {refused or ''}")
    letterbox_refused = []
    for path in paths:
        fundus = Image.open(path).convert("RGB")
        boxed = Image.new("RGB", (fundus.width, fundus.width * 3 // 4))
        boxed.paste(fundus, (0, (boxed.height - fundus.height) // 2))
        try:
            deidentify_image(encode(boxed))
        except UploadRejected:
            letterbox_refused.append(path.name)
    print(f"  false refusals, letterboxed to 4:3: {len(letterbox_refused)} of {len(paths)} {letterbox_refused or ''}")
    # Detection: text stamped across the retina of three photographs, 4 positions x 3 colours x 2 sizes.
    misses = []
    total = 0
    for name in ("01_h.jpg", "03_dr.jpg", "05_g.jpg"):
        for position in ((330, 320), (100, 150), (500, 500), (250, 80)):
            for colour in ((255, 255, 255), (255, 255, 0), (0, 0, 0)):
                for size in (24, 40):
                    fundus = Image.open(hrf / name).convert("RGB")
                    img = Image.new("RGB", (fundus.width + 220, fundus.height))
                    img.paste(fundus, (220, 0))
                    font = ImageFont.load_default(size=size)
                    ImageDraw.Draw(img).text((220 + position[0], position[1]), "JANE DOE 1961", fill=colour, font=font)
                    rgb = np.asarray(img)
                    fov = find_field_of_view(rgb)
                    if fov is not None:
                        rgb, _ = blank_outside_field(rgb, fov)
                    total += 1
                    if not find_text(Image.fromarray(rgb), blanked_outside=fov):
                        misses.append(f"{name} at {position} in {colour}, {size} px")
    print(f"  stamped text found inside the field: {total - len(misses)} of {total} (white/yellow/black, 24 and 40 px)")
    for miss in misses:
        print(f"    missed: {miss}")
    # Small type as cameras stamp it, near the optic disc too: 2 photographs x 3 positions x 4 colours x 2 sizes.
    small_misses = []
    for name in ("02_h.jpg", "04_dr.jpg"):
        fundus = Image.open(hrf / name).convert("RGB")
        fov = find_field_of_view(np.asarray(fundus))
        for position in ((400, 300), (700, 330), (300, 550)):
            for colour in ((255, 255, 255), (255, 255, 0), (0, 0, 0), (0, 255, 0)):
                for size in (14, 18):
                    img = fundus.copy()
                    font = ImageFont.load_default(size=size)
                    ImageDraw.Draw(img).text(position, "ID 20931 SMITH", fill=colour, font=font)
                    rgb = np.asarray(img)
                    if fov is not None:
                        rgb, _ = blank_outside_field(rgb, fov)
                    if not find_text(Image.fromarray(rgb), blanked_outside=fov):
                        small_misses.append(f"{name} at {position} in {colour}, {size} px")
    print(
        f"  small type found inside the field: {48 - len(small_misses)} of 48 (white/yellow/black/green, 14 and 18 px)"
    )
    for miss in small_misses:
        print(f"    missed: {miss}")
    noise = Image.fromarray(np.random.default_rng(9).integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    start = time.perf_counter()
    try:
        deidentify_image(out.getvalue())
        outcome = "ACCEPTED"
    except UploadRejected as exc:
        outcome = f"refused ({exc.code})"
    print(f"  1600x1200 noise: {outcome} after {time.perf_counter() - start:.1f} s (OCR budget {OCR_BUDGET_S:g} s)")


if __name__ == "__main__":
    main()
