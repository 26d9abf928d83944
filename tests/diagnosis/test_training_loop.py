"""The one training loop: stages in order, skipped stages, schedules, frozen modules, the time budget."""

from unittest import mock

import torch
from django.test import SimpleTestCase
from torch import nn

from diagnosis.training.loop import Optimiser, Stage, seed_everything, train_stages

CPU = torch.device("cpu")
SETTINGS = Optimiser(batch_size=4, learning_rate=0.1, weight_decay=0.0)


class TrainStagesTests(SimpleTestCase):
    def setUp(self):
        seed_everything(0)
        self.model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
        self.inputs = torch.randn(10, 3)
        self.targets = torch.randn(10, 1)

    def loss(self, batch_index):
        return nn.functional.mse_loss(self.model(self.inputs[batch_index]), self.targets[batch_index])

    def train(self, stages, **kwargs):
        return train_stages(
            self.model, stages, size=10, settings=SETTINGS, generator=seed_everything(1), device=CPU, **kwargs
        )

    def test_stages_run_in_order_skip_empty_ones_and_report_every_step(self):
        reports = []
        head = list(self.model[2].parameters())
        stages = [
            Stage("first", 2, head, self.loss),
            Stage("skipped", 0, head, self.loss),
            Stage("last", 1, head, self.loss),
        ]
        result = self.train(stages, progress=reports.append)
        self.assertEqual([(h["stage"], h["epoch"]) for h in result.history], [("first", 1), ("first", 2), ("last", 1)])
        self.assertEqual(len(reports), 3 * 3)  # 10 items in batches of 4: three steps per epoch
        self.assertFalse(self.model.training, "left in eval mode")

    def test_only_the_stage_parameters_learn_and_frozen_modules_keep_their_statistics(self):
        first, norm = self.model[0].weight.detach().clone(), self.model[1].running_mean.clone()
        self.train([Stage("head", 2, list(self.model[2].parameters()), self.loss, frozen=[self.model[1]])])
        torch.testing.assert_close(self.model[0].weight, first, rtol=0, atol=0)
        torch.testing.assert_close(self.model[1].running_mean, norm, rtol=0, atol=0)

    def test_one_cycle_steps_per_batch_and_cosine_per_epoch(self):
        for schedule, steps in (("one_cycle", 6), ("cosine", 2), ("constant", 0)):
            with self.subTest(schedule), mock.patch("diagnosis.training.loop._scheduler") as make:
                self.train([Stage("s", 2, list(self.model.parameters()), self.loss, schedule=schedule)])
                self.assertEqual(make.return_value.step.call_count, steps)

    def test_the_time_budget_stops_between_steps(self):
        result = self.train([Stage("s", 5, list(self.model.parameters()), self.loss)], time_budget_s=0.0)
        self.assertTrue(result.stopped_early)
        self.assertEqual(len(result.history), 1)
