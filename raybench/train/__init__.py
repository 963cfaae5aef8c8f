"""Training on Ray Train: the supervised side of the study, trained here and evaluated in the
same matrix as everything else (`raybench train CONFIG`, then `trained:<run>` in a matrix).

By stage: config.py (the frozen TrainConfig, from configs/train/*.yaml) -> data.py (the
source dataset's train split) + sampler.py (PK batches across DDP workers) + augment.py ->
a recipe (recipe.py registry: osnet.py, clipreid.py with clipmodel.py) giving each worker its
module, batches and loss (losses.py) -> loop.py (the Ray Train worker loop: schedule.py, a
checkpoint per epoch, resume) -> run.py (the TorchTrainer driver) -> export.py (the run as a
model: model.yaml + weights, which raybench.models.trained reads back for ``trained:<run>``).

Nothing heavy is imported here: the CLI uses config.py and export.py without torch.
"""
