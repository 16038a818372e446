"""Table 10 ablation: reconstruction in a high-level vision space."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .rils_head import RILSHead


@MODELS.register_module()
class VisionSpaceReconHead(RILSHead):
    """RILS with the text prototypes of Eq. 8 replaced by K learnable embeddings.

    Table 10, "high-level vision space": ``p = softmax(<f~, W> / tau_1)`` and
    ``q = softmax(<g~, W> / tau_2)`` over the rows of a learnable
    ``W`` (``prototypes``, K x D, L2-normalised in the loss) instead of the
    batch's text embeddings ``z^T`` (similar to DINO/iBOT/MSN prototypes);
    everything else is RILS' (the set C from the image-text match, tau_1,
    tau_2, lambda_1, lambda_2, L_contra, the masked view and decoder). W is
    trained by L_recon through the prediction ``q`` (the target ``p`` is
    stop-gradient).

    Args:
        num_prototypes (int): K. Defaults to 4096, the number of text
            prototypes RILS has at paper scale (the global batch).
        **kwargs: see :class:`RILSHead`.
    """

    def __init__(self, num_prototypes: int = 4096, **kwargs) -> None:
        super().__init__(**kwargs)
        embed_dims = self.image_projection.out_features
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, embed_dims))
        nn.init.normal_(self.prototypes, std=embed_dims**-0.5)

    def init_weights(self) -> None:
        """RILSHead's initialisation plus ``W ~ N(0, D^-1)``."""
        super().init_weights()
        nn.init.normal_(self.prototypes, std=self.prototypes.shape[1]**-0.5)

    def recon_prototypes(self, all_text: torch.Tensor) -> torch.Tensor:
        """The learnable ``W`` in place of ``z^T`` (Eq. 8)."""
        return self.prototypes
