"""What the training loops of stage 1 (the field) and stage 3 (the diffusion transformer) share.

`schedule` (every draw of a step and the learning rate as functions of (seed, step)), `checkpoints` (atomic
Accelerate checkpoints with a settings fingerprint), `ema` (the averaged copy that is exported) and `distributed`
(the launch guard). Import the submodules directly.
"""
