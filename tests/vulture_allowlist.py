"""Names that vulture (the dead-code check in ``make lint``) cannot see being used.

Each is read by a framework, not by our code: a pydantic field read through ``model_dump``, an
attribute that transformers, torch or Rich reads, a callback that the Trainer or pytest calls.
Add a name here only with the reason; anything else vulture reports is dead and goes.
"""

# ruff: noqa: B018, F821

# pydantic fields read through model_dump / written to the store's JSON
stopped_early  # RunMetrics: metrics.json
train_time_s  # RunMetrics: metrics.json
account  # SlurmSpec: passed to sbatch by key
qos  # SlurmSpec
constraint  # SlurmSpec
# attributes that libraries read
label2id  # transformers' config, saved with the checkpoint
padding_side  # transformers' tokenizer: the side its pad() pads (a decoder's, right)
fallback_random  # torch._inductor.config
caption_justify  # rich.table.Table
logging_steps  # transformers.TrainingArguments (tests)
eval_strategy  # transformers.TrainingArguments (tests)
# called by frameworks
on_epoch_begin  # transformers.TrainerCallback
control  # its signature is fixed by the Trainer
forward  # torch.nn.Module.__call__
DropoutMethod  # methods/registry.py names it by import path
RdropMethod  # methods/registry.py names it by import path
ChildtuningMethod  # methods/registry.py names it by import path
MixoutMethod  # methods/registry.py names it by import path
ForgetfulMethod  # tests/throwaway_methods.py registers it by import path
pytest_collection_modifyitems  # pytest hook (tests/conftest.py)
pytestmark  # pytest reads it from the module
quick_polls  # an autouse pytest fixture
__getattr__  # methods/__init__.py: lazy imports, called by Python on attribute access
on_files  # MkDocs hook (tools/mkdocs_hooks.py, mkdocs.yml hooks:)
on_page_markdown  # MkDocs hook (tools/mkdocs_hooks.py)
