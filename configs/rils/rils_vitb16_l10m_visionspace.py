# Table 10, "high-level vision space": RILS ViT-B/16 on L-10M with the text prototypes of
# Eq. 8 replaced by K = 4096 learnable embeddings (as many as the global batch's texts);
# all else equal. Rows "raw pixel space": configs/mae_clip/mae-clip_vitb16_l10m.py,
# "language semantic space": rils_vitb16_l10m.py.
_base_ = './rils_vitb16_l10m.py'
model = dict(head=dict(type='VisionSpaceReconHead', num_prototypes=4096))
