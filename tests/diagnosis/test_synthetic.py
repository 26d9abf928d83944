import numpy as np
from django.test import SimpleTestCase

from diagnosis.networks.synthetic import (
    HAEMORRHAGE,
    HARD_EXUDATE,
    ICDR_GRADES,
    MICROANEURYSM,
    NEOVASCULARISATION,
    SEVERE_HAEMORRHAGES_PER_QUADRANT,
    generate_fundus,
    generate_fundus_set,
    icdr_grade_from_lesions,
    quadrant_of,
)


class SyntheticFundusTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.samples = generate_fundus_set(40, seed=11, size=192)

    def test_same_seed_gives_identical_pixels_and_another_seed_does_not(self):
        first, again, other = generate_fundus(5, grade=3), generate_fundus(5, grade=3), generate_fundus(6, grade=3)
        np.testing.assert_array_equal(first.image, again.image)
        self.assertEqual(first.lesions, again.lesions)
        self.assertFalse(np.array_equal(first.image, other.image))

    def test_image_i_of_a_set_does_not_depend_on_the_set_size(self):
        longer = generate_fundus_set(45, seed=11, size=192)
        np.testing.assert_array_equal(longer[39].image, self.samples[39].image)

    def test_images_are_uint8_rgb_and_grades_cycle_through_the_scale(self):
        self.assertEqual(self.samples[0].image.shape, (192, 192, 3))
        self.assertEqual(self.samples[0].image.dtype, np.uint8)
        self.assertEqual([s.grade for s in self.samples[:10]], [0, 1, 2, 3, 4] * 2)

    def test_the_grade_follows_the_lesions_by_the_documented_rule(self):
        for sample in self.samples:
            kinds = [lesion.kind for lesion in sample.lesions]
            with self.subTest(grade=sample.grade):
                self.assertEqual(icdr_grade_from_lesions(sample.lesions, sample.fundus_centre), sample.grade)
                if sample.grade == 0:
                    self.assertEqual(kinds, [])
                if sample.grade == 1:
                    self.assertEqual(set(kinds), {MICROANEURYSM})
                if sample.grade == 2:
                    self.assertTrue({HAEMORRHAGE, HARD_EXUDATE} & set(kinds))
                    self.assertNotIn(NEOVASCULARISATION, kinds)
                if sample.grade == 3:
                    quadrants = [
                        quadrant_of(lesion.centre, sample.fundus_centre)
                        for lesion in sample.lesions
                        if lesion.kind == HAEMORRHAGE
                    ]
                    self.assertTrue(all(quadrants.count(q) >= SEVERE_HAEMORRHAGES_PER_QUADRANT for q in range(4)))
                if sample.grade == 4:
                    self.assertIn(NEOVASCULARISATION, kinds)

    def test_lesions_lie_inside_the_fundus_and_their_boxes_contain_their_centres(self):
        for sample in self.samples:
            for lesion in sample.lesions:
                x, y = lesion.centre
                x0, y0, x1, y1 = lesion.box
                self.assertLess(
                    np.hypot(x - sample.fundus_centre[0], y - sample.fundus_centre[1]), sample.fundus_radius
                )
                self.assertTrue(0 <= x0 <= x <= x1 <= 192 and 0 <= y0 <= y <= y1 <= 192)

    def test_red_lesions_are_darker_and_exudates_brighter_than_the_fundus_around_them(self):
        checked = set()
        for sample in self.samples:
            image = sample.image.astype(float)
            for lesion in sample.lesions:
                x, y = int(lesion.centre[0]), int(lesion.centre[1])
                ring = image[max(y - 12, 0) : y + 13, max(x - 12, 0) : x + 13, 1].mean()  # green channel
                if lesion.kind in (MICROANEURYSM, HAEMORRHAGE):
                    self.assertLess(image[y, x, 1], ring)
                    checked.add(lesion.kind)
                elif lesion.kind == HARD_EXUDATE:
                    brightest = image[max(y - 8, 0) : y + 9, max(x - 8, 0) : x + 9, 1].max()
                    self.assertGreater(brightest, ring)
                    checked.add(lesion.kind)
        self.assertEqual(checked, {MICROANEURYSM, HAEMORRHAGE, HARD_EXUDATE})

    def test_unknown_grade_is_refused(self):
        with self.assertRaisesMessage(ValueError, f"grade must be one of {ICDR_GRADES}"):
            generate_fundus(0, grade=5)
