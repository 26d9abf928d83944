"""The reads CSV of analyze_reads: parsed into a fully crossed table, or refused with a message naming the fault."""

from __future__ import annotations

import io

import numpy as np
from django.test import SimpleTestCase

from evaluation.stats.reads import ReadsCsvError, parse_reads_csv
from tests.support.evaluation import load_reads

GOOD = """reader,modality,case,truth,rating
r1,A,c1,0,1
r1,A,c2,1,4
r2,A,c1,0,2
r2,A,c2,1,3
r1,B,c1,0,2
r1,B,c2,1,5
r2,B,c1,0,1
r2,B,c2,1,5
r1,A,c3,0,2
r1,A,c4,1,3
r2,A,c3,0,1
r2,A,c4,1,4
r1,B,c3,0,3
r1,B,c4,1,4
r2,B,c3,0,3
r2,B,c4,1,4
"""


def parse(text: str):
    return parse_reads_csv(io.StringIO(text))


class ParseTests(SimpleTestCase):
    def test_a_good_file_gives_modality_reader_case_ratings(self):
        table = parse(GOOD)
        self.assertEqual(table.modalities, ["A", "B"])
        self.assertEqual(table.readers, ["r1", "r2"])
        self.assertEqual(table.cases, ["c1", "c2", "c3", "c4"])
        np.testing.assert_array_equal(table.truth, [False, True, False, True])
        self.assertEqual(table.ratings[1, 0, 1], 5.0)
        self.assertEqual(table.ratings[0, 1, 3], 4.0)
        self.assertEqual(table.ratings.shape, (2, 2, 4))

    def test_numeric_ids_sort_numerically_and_rows_may_come_in_any_order(self):
        table = load_reads("vandyke_mrmc.csv")
        self.assertEqual(table.modalities, ["1", "2"])
        self.assertEqual(table.readers, ["1", "2", "3", "4", "5"])
        self.assertEqual(table.cases[:3], ["1", "2", "3"])
        self.assertEqual((int(table.truth.sum()), int((~table.truth).sum())), (45, 69))
        lines = GOOD.splitlines()
        shuffled = parse("\n".join([lines[0], *reversed(lines[1:])]))
        np.testing.assert_array_equal(shuffled.ratings, parse(GOOD).ratings[::-1][:, ::-1][:, :, ::-1])

    def test_header_names_are_trimmed_and_case_insensitive_and_extra_columns_ignored(self):
        text = GOOD.replace("reader,modality,case,truth,rating", " Reader,MODALITY,case,truth,rating,comment")
        text = "\n".join(line + ",x" if i else line for i, line in enumerate(text.splitlines()))
        self.assertEqual(parse(text).ratings.shape, (2, 2, 4))

    def test_standalone_modality_is_recognised(self):
        text = GOOD.replace("r2,B,c1,0,1", "r2,B,c1,0,2")
        self.assertEqual(parse(text).standalone_modalities(), ["B"])
        self.assertEqual(parse(GOOD).standalone_modalities(), [])


class RefusalTests(SimpleTestCase):
    def assertRefused(self, text: str, message: str) -> None:
        with self.assertRaises(ReadsCsvError) as caught:
            parse(text)
        self.assertIn(message, str(caught.exception))

    def test_empty_file(self):
        self.assertRefused("", "the CSV is empty")

    def test_missing_columns(self):
        self.assertRefused("reader,case,rating\nr1,c1,3\n", "missing columns: modality, truth")

    def test_header_without_reads(self):
        self.assertRefused("reader,modality,case,truth,rating\n", "no reads")

    def test_non_numeric_rating(self):
        self.assertRefused(GOOD.replace("r2,A,c2,1,3", "r2,A,c2,1,high"), "line 5: rating 'high' is not a number")

    def test_infinite_rating(self):
        self.assertRefused(GOOD.replace("r2,A,c2,1,3", "r2,A,c2,1,inf"), "line 5: rating 'inf' is not a finite number")

    def test_truth_other_than_zero_or_one(self):
        self.assertRefused(GOOD.replace("r1,A,c2,1,4", "r1,A,c2,yes,4"), "line 3: truth 'yes' must be 0")

    def test_duplicate_rows(self):
        self.assertRefused(
            GOOD + "r1,A,c2,1,2\n", "line 18: duplicate row: reader r1 rated case c2 in modality A already on line 3"
        )

    def test_a_reader_who_did_not_read_every_case(self):
        text = GOOD.replace("r2,B,c2,1,5\n", "")
        self.assertRefused(text, "reader r2 did not read case c2 in modality B")

    def test_a_case_with_two_truths(self):
        self.assertRefused(
            GOOD.replace("r2,A,c1,0,2", "r2,A,c1,1,2"), "line 4: case c1 has truth 1 here but 0 on line 2"
        )

    def test_one_class_only(self):
        text = "reader,modality,case,truth,rating\nr1,A,c1,1,3\nr1,A,c2,1,4\n"
        self.assertRefused(text, "every case is diseased (truth 1)")

    def test_a_single_case_of_a_class(self):
        text = "reader,modality,case,truth,rating\nr1,A,c1,1,3\nr1,A,c2,0,4\nr1,A,c3,0,4\n"
        self.assertRefused(text, "1 diseased and 2 non-diseased cases: the case jackknife needs at least two of each")

    def test_wrong_number_of_fields(self):
        self.assertRefused(GOOD.replace("r1,B,c1,0,2", "r1,B,c1,0"), "line 6: 4 fields, but the header has 5")

    def test_empty_reader(self):
        self.assertRefused(GOOD.replace("r1,B,c1,0,2", ",B,c1,0,2"), "line 6: the reader is empty")
