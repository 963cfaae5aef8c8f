"""Training on Ray Train: the supervised side of the study, trained here and evaluated in the
same matrix as everything else (`raybench train CONFIG`, then `trained:<run>` in a matrix).

By stage: config.py (the frozen TrainConfig, from configs/train/*.yaml) -> data.py (the
source dataset's train split) + sampler.py (PK batches across DDP workers) + augment.py ->
a recipe (registered in ``RECIPES`` below; recipe.py says what one provides: osnet.py,
clipreid.py with clipmodel.py) giving each worker its module, batches and loss (losses.py) ->
loop.py (the Ray Train worker loop: schedule.py, a checkpoint per epoch, resume) -> run.py
(the TorchTrainer driver) -> export.py (the run as a model: model.yaml + weights, which
raybench.models.trained reads back for ``trained:<run>``).

Nothing heavy is imported here: the CLI uses config.py and export.py without torch.
"""

from __future__ import annotations

from raybench.registry import Registry

#: Recipes (recipe.Recipe) by name, lazily: config validation (config.py) reads the names
#: without importing a recipe, and a recipe module, which imports config.py, is imported only
#: when a run uses it. (Not even recipe.py is imported here, for its types: config.py imports
#: this package, and recipe.py imports config.py.)
RECIPES: Registry = Registry("training recipe")
RECIPES.register("osnet", "raybench.train.osnet:RECIPE")
RECIPES.register("clipreid-stage1", "raybench.train.clipreid:STAGE1")
RECIPES.register("clipreid-stage2", "raybench.train.clipreid:STAGE2")
