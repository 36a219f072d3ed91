"""What the training loops of stage 1 (the field) and stage 3 (the diffusion transformer) share.

`loop` (`TrainingLoop`: the Accelerator, resume, optimiser step, progress bar, logging and checkpoints of a run),
`step_draws` (every draw of a step and the learning rate as functions of (seed, step)), `checkpoints` (atomic
Accelerate checkpoints with a settings fingerprint), `ema` (the averaged copy that is exported), `distributed` (the
launch guard and the global batch size) and `config_checks` (the run settings every training config validates).
Import the submodules directly.
"""
