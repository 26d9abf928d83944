import math

from django.test import SimpleTestCase

from diagnosis.networks.synthetic import generate_fundus_set
from diagnosis.training.core import quadratic_weighted_kappa, roc_auc
from tests.support.training import lesion_recall, random_box_recall


class QuadraticWeightedKappaTests(SimpleTestCase):
    def test_kappa_matches_a_hand_computed_value_over_the_full_grade_list(self):
        # K = 5, w = (i - j)^2 / 16. Observed: (0,0), (1,3), (3,3) -> disagreement 4/16.
        # Marginals a: {0: 1, 1: 1, 3: 1}, b: {0: 1, 3: 2}; expected disagreement
        # (2/3)(9/16) + (1/3)(1/16) + (2/3)(4/16) + (1/3)(9/16) = 36/48 = 12/16 -> kappa = 1 - 4/12 = 2/3.
        self.assertAlmostEqual(quadratic_weighted_kappa([0, 1, 3], [0, 3, 3]), 2 / 3)

    def test_building_categories_from_the_observed_grades_gives_a_different_answer(self):
        # With grade 2 (and 4) unused, positions shift: 0, 1, 3 -> 0, 1, 2 and K = 3, giving 1 - 3/15 = 0.8.
        self.assertAlmostEqual(quadratic_weighted_kappa([0, 1, 3], [0, 3, 3], categories=[0, 1, 3]), 0.8)

    def test_perfect_agreement_is_one_and_systematic_disagreement_is_negative(self):
        self.assertEqual(quadratic_weighted_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]), 1.0)
        self.assertLess(quadratic_weighted_kappa([0, 1, 3, 4], [4, 3, 1, 0]), 0)

    def test_undefined_kappa_is_nan_and_unknown_grades_are_refused(self):
        self.assertTrue(math.isnan(quadratic_weighted_kappa([2, 2, 2], [2, 2, 2])))
        with self.assertRaisesMessage(ValueError, "ratings outside the category list: [5]"):
            quadratic_weighted_kappa([0, 5], [0, 1])


class RocAucTests(SimpleTestCase):
    def test_auc_matches_a_hand_count_of_ordered_pairs_with_ties_as_half(self):
        # Positives 0.9, 0.4, 0.7; negatives 0.4, 0.2, 0.6: 3 + (0.5 + 1 + 0) + 3 = 7.5 of 9 pairs.
        self.assertAlmostEqual(roc_auc([1, 1, 0, 0, 1, 0], [0.9, 0.4, 0.4, 0.2, 0.7, 0.6]), 7.5 / 9)

    def test_perfect_reversed_and_constant_scores(self):
        self.assertEqual(roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]), 1.0)
        self.assertEqual(roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]), 0.0)
        self.assertEqual(roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]), 0.5)

    def test_one_class_only_is_refused(self):
        with self.assertRaisesMessage(ValueError, "at least one positive and one negative"):
            roc_auc([1, 1], [0.2, 0.3])


class LesionRecallTests(SimpleTestCase):
    def test_recall_counts_lesion_centres_inside_any_box_of_their_image(self):
        boxes = [[(0, 0, 10, 10), (20, 20, 30, 30)], [(0, 0, 5, 5)]]
        centres = [[(5, 5), (25, 29), (15, 15)], [(6, 6)]]
        self.assertEqual(lesion_recall(boxes, centres), 2 / 4)

    def test_random_boxes_as_large_as_the_image_recall_everything(self):
        samples = [s for s in generate_fundus_set(6, seed=2, size=128) if s.lesions]
        self.assertEqual(random_box_recall(samples, 1, 256.0, draws=2), 1.0)
        self.assertLess(random_box_recall(samples, 1, 16.0, draws=5), 0.5)
