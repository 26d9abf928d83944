"""python manage.py analyze_reads: published figures in text and JSON, and a clear error with exit 1 on a bad CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import SimpleTestCase

from tests.support.evaluation import DATA, assert_printed

VAN_DYKE = str(DATA / "vandyke_mrmc.csv")


def run(*args) -> str:
    out = io.StringIO()
    call_command("analyze_reads", *args, stdout=out)
    return out.getvalue()


class TextOutputTests(SimpleTestCase):
    def test_van_dyke_prints_reader_and_modality_aucs_and_the_or_result(self):
        text = run(VAN_DYKE)
        self.assertIn("Cases: 114 (45 diseased, 69 non-diseased); readers: 5; modalities: 1, 2", text)
        self.assertIn("0.919646", text)  # reader 1, modality 1
        self.assertIn("0.897037", text)  # modality 1, reader average
        self.assertIn("difference 1 - 2: -0.043800  95% CI (-0.087959, 0.000359)", text)
        self.assertIn("F 4.45632  ndf 1  ddf 15.2597  p 0.0516657", text)
        self.assertNotIn("Sensitivity and specificity", text)

    def test_threshold_adds_pooled_sensitivity_and_specificity_with_wilson_intervals(self):
        text = run(VAN_DYKE, "--threshold", "3")
        self.assertIn("Sensitivity and specificity at rating >= 3", text)
        self.assertIn("sensitivity 0.822222 (185/225)", text)
        self.assertIn("sensitivity 0.920000 (207/225)", text)
        self.assertIn("OR-MRMC of sensitivity", text)


class JsonOutputTests(SimpleTestCase):
    def test_json_has_the_published_figures(self):
        report = json.loads(run(VAN_DYKE, "--json", "--threshold", "3"))
        head = report["mrmc"]["headline"]
        self.assertEqual(head["difference"], "1 - 2")
        assert_printed(self, head["estimate"], "-0.04380032")
        assert_printed(self, head["F"], "4.456319")
        assert_printed(self, head["ddf"], "15.25967")
        assert_printed(self, head["p_value"], "0.05166569")
        assert_printed(self, head["ci95"][0], "-0.0879595")
        assert_printed(self, head["ci95"][1], "0.0003589")
        per_modality = {row["modality"]: row["auc"] for row in report["auc_per_modality"]}
        assert_printed(self, per_modality["1"], "0.89703704")
        assert_printed(self, per_modality["2"], "0.94083736")
        self.assertEqual(len(report["auc_per_reader"]), 10)
        sensitivity = {row["modality"]: row["sensitivity"] for row in report["sensitivity_specificity"]}
        self.assertEqual((sensitivity["1"]["successes"], sensitivity["1"]["total"]), (185, 225))
        self.assertEqual(len(sensitivity["1"]["wilson_95ci"]), 2)
        assert_printed(self, report["mrmc_sensitivity"]["headline"]["F"], "6.689493")

    def test_a_standalone_ai_modality_reproduces_readers_versus_cad(self):
        with open(DATA / "cad_vs_radiologists_roc.csv", encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        cad = {row["case"]: row["rating"] for row in rows if row["reader"] == "1"}
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "reads.csv"
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["reader", "modality", "case", "truth", "rating"])
                for row in rows:
                    if row["reader"] != "1":
                        writer.writerow([row["reader"], "radiologists", row["case"], row["truth"], row["rating"]])
                        writer.writerow([row["reader"], "CAD", row["case"], row["truth"], cad[row["case"]]])
            report = json.loads(run(str(path), "--json", "--threshold", "50"))
        self.assertEqual(report["standalone_modalities"], ["CAD"])
        # The CAD's reads are counted once (80 diseased cases), the nine radiologists' nine times.
        pooled = {row["modality"]: row for row in report["sensitivity_specificity"]}
        self.assertEqual(pooled["CAD"]["sensitivity"]["total"], 80)
        self.assertEqual(pooled["radiologists"]["sensitivity"]["total"], 9 * 80)
        cad_called = sum(float(cad[str(case)]) >= 50 for case in range(121, 201))
        self.assertEqual(pooled["CAD"]["sensitivity"]["successes"], cad_called)
        head = report["mrmc"]["headline"]
        self.assertEqual(head["difference"], "radiologists - CAD")
        assert_printed(self, head["estimate"], "0.03173611")
        assert_printed(self, head["ddf"], "877.886")
        assert_printed(self, head["p_value"], "0.32104743")
        assert_printed(self, head["ci95"][0], "-0.03099877")
        assert_printed(self, head["ci95"][1], "0.09447099")

    def test_one_modality_gives_aucs_and_says_why_there_is_no_mrmc(self):
        report = json.loads(run(str(DATA / "cad_vs_radiologists_roc.csv"), "--json"))
        self.assertIsNone(report["mrmc"])
        self.assertIn("at least two modalities", report["notes"][0])
        self.assertEqual(len(report["auc_per_reader"]), 10)
        assert_printed(self, report["auc_per_reader"][0]["auc"], "0.81692708")


class PowerAndDesignTests(SimpleTestCase):
    def test_effect_prints_the_power_now_and_the_cases_or_readers_for_80_percent(self):
        report = json.loads(run(VAN_DYKE, "--json", "--effect", "0.05"))
        power = report["power"]
        self.assertEqual((power["current"]["readers"], power["current"]["cases"]), (5, 114))
        self.assertGreater(power["cases_needed"], 114)
        self.assertIn(f"{power['more_cases']} more cases", power["summary"])
        self.assertIn(power["summary"], run(VAN_DYKE, "--effect", "0.05"))

    def test_three_modalities_give_every_pairwise_difference_and_strict_json(self):
        rng = np.random.default_rng(4)
        truth = rng.integers(0, 2, 40)
        truth[:2] = [0, 1]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "reads.csv"
            lines = ["reader,modality,case,truth,rating"]
            for modality in ("A", "B", "C"):
                for reader in range(3):
                    for case in range(40):
                        rating = int(np.clip(round(truth[case] * 2 + rng.normal(1.5, 1)), 1, 5))
                        lines.append(f"{reader},{modality},{case},{truth[case]},{rating}")
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            report = json.loads(run(str(path), "--json", "--threshold", "3"))
            text = run(str(path))
        pairs = [(d["first"], d["second"]) for d in report["mrmc"]["random_readers_random_cases"]["differences"]]
        self.assertEqual(pairs, [("A", "B"), ("A", "C"), ("B", "C")])
        self.assertEqual(report["mrmc"]["random_readers_random_cases"]["ndf"], 2)
        for first, second in pairs:
            self.assertIn(f"difference {first} - {second}:", text)


class BadCsvTests(SimpleTestCase):
    def write(self, folder: str, text: str) -> str:
        path = Path(folder) / "reads.csv"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def test_each_fault_is_a_command_error_that_names_it(self):
        cases = {
            "reader,case,rating\n1,1,3\n": "missing columns: modality, truth",
            "reader,modality,case,truth,rating\n1,1,1,0,x\n1,1,2,1,3\n": "line 2: rating 'x' is not a number",
            "reader,modality,case,truth,rating\n1,1,1,0,1\n1,1,2,1,3\n1,1,2,1,3\n": "duplicate row",
            "reader,modality,case,truth,rating\n1,1,1,0,1\n1,1,2,1,3\n2,1,1,0,2\n": "reader 2 did not read case 2",
            "reader,modality,case,truth,rating\n1,1,1,1,1\n1,1,2,1,3\n": "every case is diseased",
            "reader,modality,case,truth,rating\n1,1,1,1,1\n1,1,2,0,3\n1,1,3,0,3\n": "needs at least two of each",
        }
        with tempfile.TemporaryDirectory() as folder:
            for text, message in cases.items():
                with self.subTest(message=message), self.assertRaisesMessage(CommandError, message):
                    run(self.write(folder, text))

    def test_a_missing_file_is_a_command_error(self):
        with self.assertRaisesMessage(CommandError, "no such file"):
            run("/nonexistent/reads.csv")

    def test_the_process_exits_1_with_the_message_on_stderr(self):
        with tempfile.TemporaryDirectory() as folder:
            path = self.write(folder, "reader,modality,case,truth,rating\n1,1,1,0,1\n1,1,2,1,3\n1,1,2,1,3\n")
            done = subprocess.run(
                [sys.executable, "manage.py", "analyze_reads", path],
                cwd=settings.BASE_DIR,
                env={**os.environ},
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("line 4: duplicate row: reader 1 rated case 2 in modality 1 already on line 3", done.stderr)
        self.assertEqual(done.stdout, "")
