import csv
import io
import math
from pathlib import Path

import numpy as np
from django.test import SimpleTestCase
from PIL import Image
from pydicom import dcmread

from tests.support import dicom_factories
from trials.uploads.errors import UploadRejected
from trials.uploads.visual_field import (
    GLAUCOMA_TRIALS_33,
    HFA_FULL_THRESHOLD,
    VFI_WEIGHTS,
    ReliabilityCriteria,
    VisualField,
    analyse_visual_field,
    ght_normal_limits,
    load_ght_limits,
    load_normals,
    looks_mirrored,
    mean_and_pattern_standard_deviation,
    parse_visual_field_csv,
    render_pattern_deviation_plot,
    visual_field_from_dicom,
)

DATA = Path(__file__).resolve().parent / "data"
DEMO_FIELDS = Path(__file__).resolve().parents[2] / "demo" / "data" / "visual_fields"
HEADER = (
    ["eye", "age"]
    + [f"s{i}" for i in range(1, 55)]
    + ["md", "psd", "vfi", "ght", "fixation_losses", "fixation_checks", "false_positives", "false_negatives"]
)


def expected_normal(age: float) -> np.ndarray:
    return load_normals().expected(age)


def normal_field(age: float = 60.0, offset: float = 0.0, **kwargs) -> VisualField:
    """A field exactly at the age-expected normal plus ``offset`` dB (blind spot NaN)."""
    values = expected_normal(age) + offset
    return VisualField(eye=kwargs.pop("eye", "OD"), age=age, sensitivities=tuple(float(v) for v in values), **kwargs)


def csv_text(rows: list[dict[str, object]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def csv_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {f"s{i}": 30 for i in range(1, 55)}
    row.update({"s26": "", "s35": 0, "eye": "OD", "age": 60, "md": "", "psd": "", "vfi": "", "ght": ""})
    row.update({"fixation_losses": 1, "fixation_checks": 14, "false_positives": 3, "false_negatives": 5})
    row.update(overrides)
    return row


def catch_trial_counts(rate: float) -> tuple[int, int]:
    """vfseries stores fixation losses as a fraction; HFA checks 10-30 times, so find the integer ratio."""
    for checks in range(10, 31):
        if abs(rate * checks - round(rate * checks)) < 1e-6:
            return round(rate * checks), checks
    raise AssertionError(f"no integer ratio for {rate}")


def vfseries_fields() -> list[tuple[dict[str, str], VisualField]]:
    """The 20 vfseries fields in tests/trials/data, fed through the documented CSV format (without the perimeter's
    indices and maps, so that everything analysed is computed)."""
    with (DATA / "vfseries.csv").open(encoding="utf-8") as fh:
        source = list(csv.DictReader(fh))
    rows = []
    for r in source:
        losses, checks = catch_trial_counts(float(r["malfixrate"]))
        row = {f"s{i}": r[f"s{i}"] for i in range(1, 55)}
        row.update(
            eye="OD" if r["righteye"] == "1" else "OS",
            age=r["age"],
            md="",
            psd="",
            vfi="",
            ght="",
            fixation_losses=losses,
            fixation_checks=checks,
            false_positives=float(r["falseposrate"]) * 100,
            false_negatives=float(r["falsenegrate"]) * 100,
        )
        rows.append(row)
    fields = parse_visual_field_csv(csv_text(rows))
    return list(zip(source, fields, strict=True))


class CsvParsingTests(SimpleTestCase):
    def test_a_valid_row_becomes_a_visual_field(self):
        (field,) = parse_visual_field_csv(csv_text([csv_row(s1="<0", md="-1.2", psd="2.5", vfi="98", ght="WNL")]))
        self.assertEqual(field.eye, "OD")
        self.assertEqual(field.age, 60)
        self.assertEqual(len(field.sensitivities), 54)
        self.assertEqual(field.sensitivities[0], -2.0)  # "<0" means not seen: -2 dB as HFA exports it
        self.assertTrue(math.isnan(field.sensitivities[25]))  # empty blind spot
        self.assertEqual((field.mean_deviation, field.pattern_standard_deviation), (-1.2, 2.5))
        self.assertEqual((field.visual_field_index, field.glaucoma_hemifield_test), (98, "Within normal limits"))
        self.assertAlmostEqual(field.fixation_loss_percent, 100 / 14)
        self.assertEqual((field.false_positive_percent, field.false_negative_percent), (3, 5))

    def test_optional_columns_may_be_absent(self):
        header = [c for c in HEADER if c not in ("md", "psd", "vfi", "ght")]
        row = {k: v for k, v in csv_row().items() if k in header}
        (field,) = parse_visual_field_csv(csv_text([row], header))
        self.assertIsNone(field.mean_deviation)
        self.assertIsNone(field.glaucoma_hemifield_test)

    def test_several_rows_give_several_fields_and_blank_lines_are_ignored(self):
        text = csv_text([csv_row(), csv_row(eye="os")]) + "\n\n"
        self.assertEqual([f.eye for f in parse_visual_field_csv(text)], ["OD", "OS"])

    def test_an_unknown_column_is_refused_without_echoing_its_name(self):
        header = [*HEADER, "patient_name"]
        error = self._refused(csv_text([csv_row(patient_name="CANARY^PATIENT")], header))
        self.assertIn("identifiers", error.message)
        self.assertNotIn("patient_name", error.message)
        self.assertNotIn("CANARY", error.message)

    def test_a_missing_required_column_is_named(self):
        header = [c for c in HEADER if c != "s17"]
        row = {k: v for k, v in csv_row().items() if k in header}
        self.assertIn("s17", self._refused(csv_text([row], header)).message)

    def test_bad_cells_are_refused_with_row_and_column_but_not_the_value(self):
        cases = {
            "eye": csv_row(eye="right"),
            "age": csv_row(age="CANARY"),
            "s12": csv_row(s12="99"),
            "false_positives": csv_row(false_positives="150"),
            "fixation_losses": csv_row(fixation_losses="2.5"),
            "ght": csv_row(ght="maybe"),
        }
        for column, row in cases.items():
            with self.subTest(column):
                error = self._refused(csv_text([row]))
                self.assertIn("Row 2", error.message)
                self.assertIn(column, error.message)
                self.assertNotIn("CANARY", error.message)

    def test_more_fixation_losses_than_checks_is_refused(self):
        self._refused(csv_text([csv_row(fixation_losses=15, fixation_checks=14)]))

    def test_a_left_eye_typed_in_native_orientation_is_refused(self):
        # Blind spot values typed where the native left-eye printout shows them: points 21 and 30 in OD numbering.
        error = self._refused(csv_text([csv_row(eye="OS", s35=28, s30=0, s21=2)]), "visual_field_orientation")
        self.assertIn("mirrored", error.message)

    def test_header_only_and_empty_files_are_refused(self):
        self._refused(",".join(HEADER) + "\n")
        self._refused("")

    def _refused(self, text: str, code: str | None = None) -> UploadRejected:
        with self.assertRaises(UploadRejected) as ctx:
            parse_visual_field_csv(text)
        if code:
            self.assertEqual(ctx.exception.code, code)
        return ctx.exception


class AnalysisTests(SimpleTestCase):
    def test_a_field_at_the_age_normal_has_zero_deviations_and_full_vfi(self):
        analysis = analyse_visual_field(normal_field())
        self.assertAlmostEqual(analysis.computed_mean_deviation, 0.0, places=9)
        self.assertAlmostEqual(analysis.computed_pattern_standard_deviation, 0.0, places=9)
        self.assertEqual(analysis.computed_visual_field_index, 100.0)
        analysed = [p for p in analysis.pattern_deviation_probability if p is not None]
        self.assertEqual(len(analysed), 52)
        self.assertEqual(set(analysed), {1.0})
        self.assertIsNone(analysis.total_deviation[25])
        self.assertIsNone(analysis.pattern_deviation[34])

    def test_total_deviation_is_sensitivity_minus_the_age_expected_normal(self):
        field = normal_field(age=70.0, offset=-2.0)
        analysis = analyse_visual_field(field)
        normals = load_normals()
        point = 22  # 1-based point 23, (-3, 3)
        expected = normals.intercept[point] + normals.slope[point] * 70.0
        self.assertAlmostEqual(analysis.total_deviation[point], field.sensitivities[point] - expected)

    def test_a_uniform_depression_shows_in_md_but_not_in_pattern_deviation(self):
        analysis = analyse_visual_field(normal_field(offset=-5.0))
        self.assertAlmostEqual(analysis.computed_mean_deviation, -5.0)
        self.assertAlmostEqual(analysis.general_height, -5.0)
        self.assertAlmostEqual(analysis.computed_pattern_standard_deviation, 0.0, places=9)
        self.assertEqual({p for p in analysis.pattern_deviation_probability if p is not None}, {1.0})
        self.assertLess(min(p for p in analysis.total_deviation_probability if p is not None), 0.05)

    def test_md_weights_each_point_by_its_normative_sd_and_psd_by_its_variance(self):
        # One peripheral point 10 dB down: MD weights it by 1/s (visualFields' weights for SUNY-IU), less than a plain
        # mean would; PSD is Flammer's variance-weighted formula.
        values = expected_normal(60.0).copy()
        values[0] -= 10.0
        analysis = analyse_visual_field(VisualField("OD", 60.0, tuple(float(v) for v in values)))
        analysed = [i for i in range(54) if i not in (25, 34)]
        s2 = load_normals().sd_td[analysed] ** 2
        td = np.zeros(52)
        td[0] = -10.0
        md = float(np.sum(td / np.sqrt(s2)) / np.sum(1 / np.sqrt(s2)))
        psd = math.sqrt(np.mean(s2) * np.sum((td - md) ** 2 / s2) / 51)
        self.assertAlmostEqual(analysis.computed_mean_deviation, md)
        self.assertAlmostEqual(analysis.computed_pattern_standard_deviation, psd)
        self.assertNotAlmostEqual(analysis.computed_mean_deviation, -10.0 / 52, places=3)

    def test_general_height_is_the_seventh_highest_total_deviation(self):
        values = expected_normal(60.0).copy()
        bumps = np.array([i for i in range(54) if i not in (25, 34)])
        values[bumps] += np.linspace(-3, 3, 52)  # distinct TDs from -3 to +3
        analysis = analyse_visual_field(VisualField("OD", 60.0, tuple(float(v) for v in values)))
        tds = sorted((t for t in analysis.total_deviation if t is not None), reverse=True)
        self.assertAlmostEqual(analysis.general_height, tds[6])
        self.assertAlmostEqual(analysis.pattern_deviation[0], analysis.total_deviation[0] - tds[6])

    def test_a_deep_local_defect_is_flagged_at_half_a_percent_and_lowers_vfi(self):
        values = expected_normal(60.0).copy()
        defect = [0, 1, 4, 5]  # superior arcuate corner
        values[defect] = 5.0
        analysis = analyse_visual_field(VisualField("OD", 60.0, tuple(float(v) for v in values)))
        for i in defect:
            self.assertEqual(analysis.pattern_deviation_probability[i], 0.005)
        self.assertLess(analysis.computed_visual_field_index, 100.0)
        self.assertGreater(analysis.computed_pattern_standard_deviation, 3.0)

    def test_unseen_points_score_zero_in_the_vfi(self):
        values = expected_normal(60.0).copy()
        values[[22, 23, 31, 32]] = -1.0  # the four central points, not seen
        analysis = analyse_visual_field(VisualField("OD", 60.0, tuple(float(v) for v in values)))
        # Central points (eccentricity 4.2 deg) weigh 3.29 each; zeroing them removes exactly their share.
        analysed = [i for i in range(54) if i not in (25, 34)]
        total = sum(VFI_WEIGHTS[i] for i in analysed)
        self.assertEqual([VFI_WEIGHTS[i] for i in (22, 23, 31, 32)], [3.29] * 4)
        self.assertAlmostEqual(analysis.computed_visual_field_index, 100 * (total - 4 * 3.29) / total)

    def test_perimeter_indices_are_preferred_and_computed_ones_fill_the_gaps(self):
        analysis = analyse_visual_field(normal_field(mean_deviation=-1.23))
        self.assertEqual(analysis.mean_deviation, -1.23)
        self.assertEqual(analysis.indices_source["md"], "perimeter")
        self.assertEqual(analysis.indices_source["psd"], "computed")
        self.assertEqual(analysis.visual_field_index, analysis.computed_visual_field_index)

    def test_missing_points_outside_the_blind_spot_are_refused(self):
        values = list(expected_normal(60.0))
        values[3] = math.nan
        with self.assertRaises(UploadRejected):
            analyse_visual_field(VisualField("OD", 60.0, tuple(values)))


GHT_CODES = {"1": "Within normal limits", "2": "Borderline", "3": "Outside normal limits"}
GHT_ORDER = ["Within normal limits", "Borderline", "Outside normal limits"]


class ValidationAgainstHumphreyTests(SimpleTestCase):
    """Computed indices against the HFA's own STATPAC values for all 20 vfseries fields (tests/trials/data/README.md):
    ten of a progressing right eye (MD -0.2 to -6.7 dB) and ten of an advanced left eye (MD -9.8 to -12.1 dB)."""

    def setUp(self):
        self.fields = vfseries_fields()
        self.assertEqual(len(self.fields), 20)
        self.assertEqual(sum(1 for r, _ in self.fields if float(r["md"]) < -9), 10)

    def test_md_is_within_0_3_db_of_the_perimeter_on_all_20_fields(self):
        for row, field in self.fields:
            with self.subTest(eye=row["eyeid"], visit=row["nvisit"]):
                error = analyse_visual_field(field).computed_mean_deviation - float(row["md"])
                self.assertLessEqual(abs(error), 0.3)

    def test_psd_is_within_0_3_db_on_19_fields_and_0_35_on_all(self):
        """Not all 20: eye 2 visit 1 is 10.74 dB against the perimeter's 11.07 (-0.33); the next worst are eye 2
        visit 10 (14.71 against 14.41, +0.30) and eye 1 visits 8 and 10 (+0.26). The formula is Heijl et al.'s
        (1987); what differs is HFA's proprietary normals (``test_the_psd_gap_is_hfas_normals_not_the_formula``)."""
        errors = []
        for row, field in self.fields:
            errors.append(analyse_visual_field(field).computed_pattern_standard_deviation - float(row["psd"]))
        self.assertLessEqual(max(abs(e) for e in errors), 0.35)
        self.assertGreaterEqual(sum(abs(e) <= 0.3 for e in errors), 19)

    def test_vfi_is_within_2_points_on_19_fields_and_2_2_on_all(self):
        """Not all 20: eye 2 visit 4 computes 71.16 against the perimeter's 69 (+2.16; the perimeter prints whole
        percent, so its own value lies in [68.5, 69.5) and the error between 1.66 and 2.66); the next worst are eye 1
        visit 9 (96.51 against 95, +1.51) and eye 2 visit 9 (69.23 against 68, +1.23). The cause is the PD symbols
        (``test_the_vfi_gap_is_the_suny_iu_pd_limits_and_general_height``); the perimeter's own symbols are used
        when it gives them, and with them the VFI is within 1 point on all 20."""
        errors = []
        for row, field in self.fields:
            errors.append(analyse_visual_field(field).computed_visual_field_index - float(row["vfi"]))
        self.assertLessEqual(max(abs(e) for e in errors), 2.2)
        self.assertGreaterEqual(sum(abs(e) <= 2.0 for e in errors), 19)

    def test_the_psd_gap_is_hfas_normals_not_the_formula(self):
        # The same formula on the perimeter's own TD (HFA's age normals, printed to 1 dB), still weighted by the
        # SUNY-IU SDs: eye 2 visit 1 comes out at the perimeter's PSD (so its -0.33 dB is SUNY-IU's age-normal
        # shape), but the other advanced fields come out 0.11-0.56 dB high, four of them over 0.3: HFA's pointwise
        # variances are not SUNY-IU's either, and with SUNY-IU's TD the two differences partly cancel. HFA's
        # normals are proprietary and no independent data here holds HFA PSDs to derive them from.
        sd = load_normals().sd_td[[i for i in range(54) if i not in (25, 34)]]
        errors = {}
        for row, _ in self.fields:
            td = np.array([float(row[f"td{i}"]) for i in range(1, 55) if i not in (26, 35)])
            _, psd = mean_and_pattern_standard_deviation(td, sd)
            errors[(row["eyeid"][0], int(row["nvisit"]))] = psd - float(row["psd"])
        self.assertLessEqual(abs(errors[("2", 1)]), 0.05)
        advanced = [errors[("2", visit)] for visit in range(2, 11)]
        self.assertGreater(min(advanced), 0.1)
        self.assertGreaterEqual(max(advanced), 0.5)
        self.assertEqual(sum(e > 0.3 for e in advanced), 4)

    def test_the_vfi_gap_is_the_suny_iu_pd_limits_and_general_height(self):
        # HFA's 5% PD limits are narrower than SUNY-IU's: points the perimeter flags although its PD (printed to
        # 1 dB, so within 0.5 dB) lies above the SUNY-IU 5% limit, and never the other way.
        normals = load_normals()
        limit = normals.pd_lut[:, normals.probs.index(0.05)]
        flagged_above = left_below = 0
        for row, _ in self.fields:
            for i in (i for i in range(54) if i not in (25, 34)):
                pd, flagged = float(row[f"pd{i + 1}"]), float(row[f"pdp{i + 1}"]) <= 0.05
                flagged_above += flagged and pd - 0.5 >= limit[i]
                left_below += (not flagged) and pd + 0.5 < limit[i]
        self.assertEqual((flagged_above, left_below), (27, 0))
        # On eye 2 visit 4 (+2.16) the computed general height is also 0.59 dB under the perimeter's (the mean of
        # its TD - PD), which lifts every PD and leaves more points unflagged.
        row, field = self.fields[13]
        self.assertEqual((row["eyeid"][0], row["nvisit"]), ("2", "4"))
        device_gh = np.mean([float(row[f"td{i}"]) - float(row[f"pd{i}"]) for i in range(1, 55) if i not in (26, 35)])
        self.assertLess(analyse_visual_field(field).general_height - device_gh, -0.5)

    def test_not_seen_points_count_at_their_exported_value_as_the_perimeter_does(self):
        # The perimeter's TD at a "<0" point is -2 dB minus the normal (within its 1 dB rounding and ~0.3 dB normals
        # offset); clamping such points to 0 dB is what put MD 0.5-0.8 dB above the perimeter's on the advanced eye.
        normals = load_normals()
        checked = 0
        for row, field in self.fields:
            expected = normals.expected(field.age)
            for i, value in enumerate(field.sensitivities):
                if value < 0 and (i + 1) not in (26, 35):
                    self.assertAlmostEqual(float(row[f"td{i + 1}"]), value - expected[i], delta=1.3)
                    checked += 1
        self.assertGreater(checked, 80)

    def test_computed_ght_agrees_with_the_perimeter_on_18_of_20_and_is_never_two_steps_off(self):
        agree = 0
        for row, field in self.fields:
            computed = analyse_visual_field(field).computed_glaucoma_hemifield_test
            device = GHT_CODES[row["ght"]]
            agree += computed == device
            self.assertLessEqual(abs(GHT_ORDER.index(computed) - GHT_ORDER.index(device)), 1)
        self.assertGreaterEqual(agree, 18)


class HemifieldTests(SimpleTestCase):
    def test_shipped_limits_are_those_of_the_suny_iu_controls(self):
        with (DEMO_FIELDS / "vfctrSunyiu24d2.csv").open(encoding="utf-8") as fh:
            controls = [
                VisualField(
                    r["eye"],
                    float(r["age"]),
                    tuple(math.nan if i in (26, 35) else float(r[f"l{i}"]) for i in range(1, 55)),
                )
                for r in csv.DictReader(fh)
            ]
        self.assertEqual(ght_normal_limits(controls), dict(load_ght_limits()))

    def test_a_field_at_the_age_normal_is_within_normal_limits(self):
        self.assertEqual(analyse_visual_field(normal_field()).glaucoma_hemifield_test, "Within normal limits")

    def test_a_superior_arcuate_defect_is_outside_normal_limits(self):
        values = expected_normal(60.0).copy()
        values[[0, 1, 4, 5, 6, 10, 11]] = 5.0  # sectors 1 and 3 above, their mirrors intact
        analysis = analyse_visual_field(VisualField("OD", 60.0, tuple(float(v) for v in values)))
        self.assertEqual(analysis.computed_glaucoma_hemifield_test, "Outside normal limits")
        self.assertEqual(analysis.indices_source["ght"], "computed")

    def test_a_uniform_depression_is_a_general_reduction(self):
        analysis = analyse_visual_field(normal_field(offset=-6.0))
        self.assertEqual(analysis.computed_glaucoma_hemifield_test, "General reduction of sensitivity")

    def test_the_perimeter_ght_is_preferred(self):
        analysis = analyse_visual_field(normal_field(glaucoma_hemifield_test="Borderline"))
        self.assertEqual(analysis.glaucoma_hemifield_test, "Borderline")
        self.assertEqual(analysis.computed_glaucoma_hemifield_test, "Within normal limits")
        self.assertEqual(analysis.indices_source["ght"], "perimeter")


def real_fields() -> list[tuple[str, tuple[float, ...]]]:
    """All 700 real 24-2 fields the repository ships (right-eye orientation): 263 + 360 demo fields, 42 of
    vfpwgSunyiu24d2, 20 vfseries and 15 UWHVF (tests/trials/data/README.md)."""
    fields: list[tuple[str, tuple[float, ...]]] = []

    def read(path: Path, prefix: str, name: str) -> None:
        with path.open(encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                values = tuple(
                    math.nan if r[f"{prefix}{i}"] in ("", "NA") else float(r[f"{prefix}{i}"]) for i in range(1, 55)
                )
                fields.append((name, values))

    read(DEMO_FIELDS / "vfctrSunyiu24d2.csv", "l", "vfctrSunyiu24d2")
    read(DEMO_FIELDS / "vfpwgRetest24d2.csv", "l", "vfpwgRetest24d2")
    read(DATA / "vfpwgSunyiu24d2.csv", "l", "vfpwgSunyiu24d2")
    read(DATA / "vfseries.csv", "s", "vfseries")
    read(DATA / "uwhvf_sample15.csv", "Sens_", "uwhvf")
    return fields


class OrientationTests(SimpleTestCase):
    def test_all_700_real_fields_pass_the_orientation_check(self):
        fields = real_fields()
        self.assertEqual(len(fields), 700)
        refused = [name for name, values in fields if looks_mirrored(values)]
        self.assertEqual(refused, [])

    def test_most_real_fields_typed_in_native_left_eye_order_are_refused(self):
        # Each printed row typed left to right: the right-eye rows reversed.
        rows, start = [], 0
        for count in (4, 6, 8, 9, 9, 8, 6, 4):
            rows.append(list(range(start, start + count)))
            start += count
        order = [i for row in rows for i in reversed(row)]
        fields = real_fields()
        refused = sum(looks_mirrored(tuple(values[i] for i in order)) for _, values in fields)
        self.assertGreater(refused, 0.8 * len(fields))


class ReliabilityTests(SimpleTestCase):
    def test_default_rules_are_li_et_al_and_flag_each_index_at_its_cut_off(self):
        cases = {
            "fixation_losses >= 15.38%": {"fixation_losses": 2, "fixation_checks": 13},  # 2/13
            "false_positives >= 15%": {"false_positive_percent": 15.0},
            "false_negatives >= 15%": {"false_negative_percent": 15.0},
        }
        base = {
            "fixation_losses": 1,
            "fixation_checks": 13,
            "false_positive_percent": 2.0,
            "false_negative_percent": 3.0,
        }
        for rule, change in cases.items():
            with self.subTest(rule):
                reliability = analyse_visual_field(normal_field(**{**base, **change})).reliability
                self.assertFalse(reliability.reliable)
                self.assertEqual(reliability.fired, (rule,))
                self.assertEqual(reliability.criteria.name, "Li et al. 2018")

    def test_values_just_under_the_cut_offs_are_reliable(self):
        field = normal_field(
            fixation_losses=2, fixation_checks=14, false_positive_percent=14.9, false_negative_percent=14.9
        )
        self.assertTrue(analyse_visual_field(field).reliability.reliable)

    def test_a_verdict_carries_its_cut_offs(self):
        criteria = analyse_visual_field(normal_field()).reliability.criteria
        self.assertEqual(
            criteria.as_dict(),
            {
                "name": "Li et al. 2018",
                "fixation_losses_max": 200 / 13,
                "false_positives_max": 15.0,
                "false_negatives_max": 15.0,
            },
        )

    def test_cut_offs_are_parameters(self):
        field = normal_field(fixation_losses=3, fixation_checks=10, false_positive_percent=20, false_negative_percent=0)
        self.assertFalse(analyse_visual_field(field, criteria=HFA_FULL_THRESHOLD).reliability.reliable)
        self.assertTrue(analyse_visual_field(field, criteria=GLAUCOMA_TRIALS_33).reliability.reliable)
        strict = ReliabilityCriteria("strict", 5, 5, 5)
        self.assertEqual(len(analyse_visual_field(field, criteria=strict).reliability.fired), 2)

    def test_missing_indices_are_reported_as_not_evaluated(self):
        import dataclasses

        partly = dataclasses.replace(normal_field(), fixation_losses=1, fixation_checks=20)
        reliability = analyse_visual_field(partly).reliability
        self.assertTrue(reliability.reliable)
        self.assertEqual(set(reliability.not_evaluated), {"false_positives", "false_negatives"})

    def test_a_field_without_any_reliability_index_is_not_called_reliable(self):
        reliability = analyse_visual_field(normal_field()).reliability
        self.assertFalse(reliability.reliable)
        self.assertIn("no reliability indices", reliability.fired[0])
        self.assertEqual(set(reliability.not_evaluated), {"fixation_losses", "false_positives", "false_negatives"})


class PatternDeviationPlotTests(SimpleTestCase):
    def defect_analysis(self, eye: str = "OD"):
        values = expected_normal(60.0).copy()
        values[27] = 0.0  # point 28: the nasal step below the midline, (-27, -3) in right-eye orientation
        return analyse_visual_field(VisualField(eye, 60.0, tuple(float(v) for v in values)))

    @staticmethod
    def cell(img: np.ndarray, x: int, y: int, size: int = 224) -> np.ndarray:
        cell = size / 10
        col, row = (x + 27) // 6, (21 - y) // 6 + 1
        top, left = round(row * cell), round(col * cell)
        return img[top + 4 : round(top + cell) - 4, left + 4 : round(left + cell) - 4]

    def test_plot_is_a_grayscale_png_of_the_requested_size(self):
        png = render_pattern_deviation_plot(self.defect_analysis(), size=300)
        img = Image.open(io.BytesIO(png))
        self.assertEqual((img.format, img.mode, img.size), ("PNG", "L", (300, 300)))

    def test_a_half_percent_point_is_a_solid_square_and_normal_points_are_small_dots(self):
        img = np.asarray(Image.open(io.BytesIO(render_pattern_deviation_plot(self.defect_analysis()))))
        self.assertEqual(self.cell(img, -27, -3).max(), 0)  # solid black
        normal = self.cell(img, 3, 21)
        self.assertLess((normal == 0).mean(), 0.2)  # a dot, mostly white
        self.assertGreater((normal == 0).sum(), 0)
        self.assertEqual(self.cell(img, 15, 3).min(), 255)  # blind spot left blank

    def test_left_eye_is_drawn_mirrored_like_the_printout_unless_asked_otherwise(self):
        analysis = self.defect_analysis("OS")
        native = np.asarray(Image.open(io.BytesIO(render_pattern_deviation_plot(analysis))))
        self.assertEqual(self.cell(native, 27, -3).max(), 0)
        right = np.asarray(Image.open(io.BytesIO(render_pattern_deviation_plot(analysis, orientation="right"))))
        self.assertEqual(self.cell(right, -27, -3).max(), 0)

    def test_rendering_is_deterministic(self):
        analysis = self.defect_analysis()
        self.assertEqual(render_pattern_deviation_plot(analysis), render_pattern_deviation_plot(analysis))


class DicomHemifieldTests(SimpleTestCase):
    """The glaucoma hemifield test read from a perimetry DICOM object keeps only the known results."""

    def field_with_ght(self, meaning: str | None = None, text: str | None = None) -> VisualField:
        values = [28.0] * 54
        values[25] = values[34] = math.nan
        ds = dcmread(io.BytesIO(dicom_factories.visual_field(tuple(values))))
        ght = ds.VisualFieldGlobalResultsIndexSequence[0].DataObservationSequence[1]
        if text is not None:
            del ght.ConceptCodeSequence
            ght.TextValue = text
        elif meaning is not None:
            ght.ConceptCodeSequence[0].CodeMeaning = meaning
        return visual_field_from_dicom(ds, age=60)

    def test_known_results_are_mapped_to_the_csv_labels(self):
        self.assertEqual(self.field_with_ght().glaucoma_hemifield_test, "Within normal limits")
        self.assertEqual(self.field_with_ght("OUTSIDE NORMAL LIMITS").glaucoma_hemifield_test, "Outside normal limits")
        self.assertEqual(self.field_with_ght(text=" Borderline ").glaucoma_hemifield_test, "Borderline")
        self.assertEqual(self.field_with_ght(text="GRS").glaucoma_hemifield_test, "General reduction of sensitivity")

    def test_free_text_in_code_meaning_or_text_value_becomes_unknown_never_the_text(self):
        for kwargs in ({"meaning": "Reviewed: JOHN SMITH MRN 778899"}, {"text": "Reviewed: JOHN SMITH MRN 778899"}):
            with self.subTest(**kwargs):
                field = self.field_with_ght(**kwargs)
                self.assertIsNone(field.glaucoma_hemifield_test)
                self.assertNotIn("JOHN", repr(field))


def vfseries_with_perimeter_values() -> list[tuple[dict[str, str], VisualField]]:
    """The 20 vfseries fields with the perimeter's own indices, GHT and the four maps, in the documented CSV."""
    with (DATA / "vfseries.csv").open(encoding="utf-8") as fh:
        source = list(csv.DictReader(fh))
    maps = [f"{p}{i}" for p in ("td", "pd", "tdp", "pdp") for i in range(1, 55) if i not in (26, 35)]
    header = [*HEADER, "perimeter", *maps]
    rows = []
    for r in source:
        losses, checks = catch_trial_counts(float(r["malfixrate"]))
        row = {f"s{i}": r[f"s{i}"] for i in range(1, 55)}
        row.update({c: r[c] for c in maps})
        row.update(
            eye="OD" if r["righteye"] == "1" else "OS",
            age=r["age"],
            md=r["md"],
            psd=r["psd"],
            vfi=r["vfi"],
            ght={"1": "WNL", "2": "Borderline", "3": "ONL"}[r["ght"]],
            perimeter="Humphrey HFA II",
            fixation_losses=losses,
            fixation_checks=checks,
            false_positives=float(r["falseposrate"]) * 100,
            false_negatives=float(r["falsenegrate"]) * 100,
        )
        rows.append(row)
    return list(zip(source, parse_visual_field_csv(csv_text(rows, header)), strict=True))


class PerimeterValuesCsvTests(SimpleTestCase):
    def test_the_perimeter_maps_and_indices_of_all_20_real_fields_are_what_the_analysis_reports(self):
        for row, field in vfseries_with_perimeter_values():
            with self.subTest(eye=row["eyeid"], visit=row["nvisit"]):
                analysis = analyse_visual_field(field)
                for i in range(54):
                    if i in (25, 34):
                        self.assertIsNone(analysis.pattern_deviation_probability[i])
                        continue
                    self.assertEqual(analysis.pattern_deviation_probability[i], float(row[f"pdp{i + 1}"]))
                    self.assertEqual(analysis.total_deviation[i], float(row[f"td{i + 1}"]))
                self.assertEqual(analysis.mean_deviation, float(row["md"]))
                self.assertEqual(analysis.glaucoma_hemifield_test, GHT_CODES[row["ght"]])
                self.assertEqual(set(analysis.indices_source.values()), {"perimeter"})

    def test_the_net_plot_of_a_real_field_is_drawn_from_the_perimeter_symbols(self):
        # Eye 2, visit 1: the recomputed symbols differ from the perimeter's at several points.
        (row, with_device), (_, computed) = vfseries_with_perimeter_values()[10], vfseries_fields()[10]
        device_plot = render_pattern_deviation_plot(analyse_visual_field(with_device))
        computed_analysis = analyse_visual_field(computed)
        self.assertNotEqual(device_plot, render_pattern_deviation_plot(computed_analysis))
        symbols = tuple(None if i in (26, 35) else float(row[f"pdp{i}"]) for i in range(1, 55))
        import dataclasses

        rebuilt = dataclasses.replace(computed_analysis, pattern_deviation_probability=symbols)
        self.assertEqual(device_plot, render_pattern_deviation_plot(rebuilt))

    def test_vfi_from_the_perimeter_symbols_is_within_1_point_of_its_vfi_on_all_20_fields(self):
        for row, field in vfseries_with_perimeter_values():
            with self.subTest(eye=row["eyeid"], visit=row["nvisit"]):
                analysis = analyse_visual_field(field)
                self.assertLessEqual(abs(analysis.computed_visual_field_index - float(row["vfi"])), 1.0)

    def test_a_map_with_missing_columns_or_a_bad_symbol_is_refused(self):
        header = [*HEADER, *[f"pdp{i}" for i in range(1, 54)]]  # pdp54 missing
        row = csv_row(**{f"pdp{i}": 1 for i in range(1, 54)})
        with self.assertRaisesMessage(UploadRejected, "pdp54"):
            parse_visual_field_csv(csv_text([row], header))
        header = [*HEADER, *[f"pdp{i}" for i in range(1, 55)]]
        row = csv_row(**{**{f"pdp{i}": 1 for i in range(1, 55)}, "pdp7": "0.03"})
        with self.assertRaisesMessage(UploadRejected, "column pdp7"):
            parse_visual_field_csv(csv_text([row], header))

    def test_a_field_of_another_maker_is_refused_naming_it(self):
        header = [*HEADER, "perimeter"]
        with self.assertRaises(UploadRejected) as ctx:
            parse_visual_field_csv(csv_text([csv_row(perimeter="Octopus 900")], header))
        self.assertIn("Haag-Streit Octopus", ctx.exception.message)
        self.assertEqual(ctx.exception.code, "vf_not_humphrey")
        with self.assertRaises(UploadRejected) as ctx:
            parse_visual_field_csv(csv_text([csv_row(perimeter="CANARY device")], header))
        self.assertNotIn("CANARY", ctx.exception.message)
        (field,) = parse_visual_field_csv(csv_text([csv_row(perimeter="Zeiss HFA3 860")], header))
        self.assertEqual(field.eye, "OD")
