# The Table 10 "high-level vision space" ablation at toy scale: K = 64 learnable prototypes
# (the toy batch size, as many as RILS' text prototypes there) in place of z^T in Eq. 8.
_base_ = './rils_vittiny_toy.py'
model = dict(head=dict(type='VisionSpaceReconHead', num_prototypes=64))
