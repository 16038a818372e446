from .retrieval import ImageTextRetrievalRecall, image_text_recall_at_k
from .zero_shot import ZeroShotAccuracy, mean_per_class_accuracy, top_k_accuracy

__all__ = [
    'ZeroShotAccuracy', 'ImageTextRetrievalRecall', 'image_text_recall_at_k',
    'mean_per_class_accuracy', 'top_k_accuracy'
]
