"""Evaluation metrics on constructed inputs with known answers, and against
independent reference implementations (scikit-learn, clip-benchmark)."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample

import rils_mm  # noqa: F401
from rils_mm.evaluation import (
    ImageTextRetrievalRecall,
    ZeroShotAccuracy,
    image_text_recall_at_k,
    low_shot_logistic_regression,
    mean_per_class_accuracy,
    sample_k_per_class,
    top_k_accuracy,
)


def _cls_samples(scores, labels):
    return [
        DataSample().set_pred_score(torch.tensor(s, dtype=torch.float)).set_gt_label(int(y))
        for s, y in zip(scores, labels)
    ]


# 6 samples, 5 classes. argmax: 0, 1, 1, 2, 4, 3 ; labels: 0, 1, 2, 2, 2, 4
SCORES = [
    [.9, .05, .02, .02, .01],
    [.1, .6, .1, .1, .1],
    [.1, .5, .3, .05, .05],  # label 2 is 2nd
    [.1, .1, .7, .05, .05],
    [.3, .2, .05, .05, .4],  # label 2 is 4th (after 4, 0, 1)
    [.05, .05, .1, .6, .2],  # label 4 is 2nd
]
LABELS = [0, 1, 2, 2, 2, 4]


def test_zero_shot_accuracy_known_answer():
    scores, labels = torch.tensor(SCORES), torch.tensor(LABELS)
    # top-1: samples 0, 1, 3 correct -> 3 / 6
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(50.0)
    # top-2 adds samples 2 and 5 -> 5 / 6
    assert top_k_accuracy(scores, labels, 2) == pytest.approx(500 / 6)
    # per class recall: class 0: 1/1, class 1: 1/1, class 2: 1/3, class 4: 0/1
    expected_mpc = (1 + 1 + 1 / 3 + 0) / 4 * 100
    assert mean_per_class_accuracy(scores.argmax(1), labels) == pytest.approx(expected_mpc)

    from sklearn.metrics import balanced_accuracy_score
    assert expected_mpc == pytest.approx(
        100 * balanced_accuracy_score(LABELS, scores.argmax(1).numpy()))

    for main, score in (('top1', 50.0), ('mean_per_class', expected_mpc)):
        evaluator = Evaluator(dict(type='mmpretrain.ZeroShotAccuracy', main_metric=main))
        evaluator.process(_cls_samples(SCORES[:4], LABELS[:4]))  # two batches
        evaluator.process(_cls_samples(SCORES[4:], LABELS[4:]))
        out = evaluator.evaluate(6)
        assert out['zero-shot/top1'] == pytest.approx(50.0)
        assert out['zero-shot/top5'] == pytest.approx(100.0)
        assert out['zero-shot/mean_per_class'] == pytest.approx(expected_mpc)
        assert out['zero-shot/score'] == pytest.approx(score)


def test_zero_shot_accuracy_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match='main_metric'):
        ZeroShotAccuracy(main_metric='top5')
    metric = ZeroShotAccuracy()
    with pytest.raises(KeyError, match='pred_score'):
        metric.process(None, [DataSample().set_gt_label(1).to_dict()])


def test_no_top5_with_fewer_than_five_classes():
    evaluator = Evaluator(dict(type='mmpretrain.ZeroShotAccuracy'))
    evaluator.process(_cls_samples([[.2, .8], [.6, .4]], [1, 1]))
    out = evaluator.evaluate(2)
    assert 'zero-shot/top5' not in out
    assert out['zero-shot/top1'] == pytest.approx(50.0)
    assert out['zero-shot/mean_per_class'] == pytest.approx(50.0)


def _unit(i, d=8):
    v = torch.zeros(d)
    v[i] = 1.0
    return v


def test_retrieval_recall_known_answer():
    # 3 images e0, e1, e2 with 2 captions each; no ties anywhere.
    images = torch.stack([_unit(0), _unit(1), _unit(2)])
    texts = torch.stack([
        0.9 * _unit(0), 0.8 * _unit(1) + 0.1 * _unit(0),  # image 0
        0.7 * _unit(1), 0.6 * _unit(1) + 0.2 * _unit(2),  # image 1
        0.5 * _unit(0) + 0.3 * _unit(2), 0.4 * _unit(2) + 0.35 * _unit(1),  # image 2
    ])
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    m = image_text_recall_at_k(images, texts, owner, topk=(1, 2))
    # image -> text, best caption: img0 -> t0 (0.9, its own), img1 -> t1 (0.8, image
    # 0's), img2 -> t5 (0.4, its own): R@1 = 2/3; img1's 2nd is t2 (0.7): R@2 = 3/3
    assert m['i2t_R@1'] == pytest.approx(200 / 3)
    assert m['i2t_R@2'] == pytest.approx(100.0)
    # text -> image, best image: t0 img0 ok, t1 img1 (0.8) wrong, t2 img1 ok, t3 img1 ok,
    # t4 img0 (0.5) wrong, t5 img2 (0.4 > 0.35) ok: R@1 = 4/6; the 2nd images of t1
    # and t4 are their own: R@2 = 6/6
    assert m['t2i_R@1'] == pytest.approx(400 / 6)
    assert m['t2i_R@2'] == pytest.approx(100.0)

    evaluator = Evaluator(dict(type='mmpretrain.ImageTextRetrievalRecall', topk=(1, 2)))
    samples = []
    for i in range(3):
        ds = DataSample()
        ds.set_field(images[i], 'image_embedding')
        ds.set_field(texts[2 * i:2 * i + 2], 'text_embeddings')
        samples.append(ds)
    evaluator.process(samples)
    out = evaluator.evaluate(3)
    assert out['retrieval/t2i_R@1'] == pytest.approx(400 / 6)
    assert out['retrieval/i2t_R@1'] == pytest.approx(200 / 3)


def test_retrieval_recall_matches_clip_benchmark_on_random_embeddings():
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k
    g = torch.Generator().manual_seed(0)
    n_img, k_caps = 40, 5
    images = torch.nn.functional.normalize(torch.randn(n_img, 16, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(
        images.repeat_interleave(k_caps, 0) + 1.2 * torch.randn(n_img * k_caps, 16, generator=g),
        dim=-1)
    owner = torch.arange(n_img).repeat_interleave(k_caps)
    ours = image_text_recall_at_k(images, texts, owner, topk=(1, 5, 10))
    scores = texts @ images.t()
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(owner)), owner] = True
    for k in (1, 5, 10):
        t2i = (recall_at_k(scores, positive, k) > 0).float().mean().item() * 100
        i2t = (recall_at_k(scores.t(), positive.t(), k) > 0).float().mean().item() * 100
        assert ours[f't2i_R@{k}'] == pytest.approx(t2i)
        assert ours[f'i2t_R@{k}'] == pytest.approx(i2t)
    assert 0 < ours['t2i_R@1'] < 100  # not a degenerate case


def test_retrieval_metric_needs_embeddings():
    with pytest.raises(KeyError, match='retrieval mode'):
        ImageTextRetrievalRecall().process(None, [dict(pred_score=torch.zeros(2))])


def test_sample_k_per_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = sample_k_per_class(labels, 2, seed=3)
    assert np.bincount(labels[idx]).tolist() == [2, 2, 2]
    assert np.array_equal(idx, sample_k_per_class(labels, 2, seed=3))
    assert len(np.unique(idx)) == 6
    with pytest.raises(ValueError, match='fewer than 3'):
        sample_k_per_class(labels, 3, seed=0)


def test_low_shot_logistic_regression_known_answer():
    # Features are one-hot class codes: a classifier fit on them predicts the class whose
    # code a test feature carries. 10 test samples carry a wrong code -> 90% exactly.
    num_classes, dim = 5, 5
    train_y = np.repeat(np.arange(num_classes), 4)
    train_x = np.eye(dim)[train_y] * 3.0  # scale is removed by L2 normalisation
    test_y = np.repeat(np.arange(num_classes), 20)
    codes = test_y.copy()
    codes[::10] = (codes[::10] + 1) % num_classes
    test_x = np.eye(dim)[codes]
    res = low_shot_logistic_regression(train_x, train_y, test_x, test_y, shots=(1, 2),
                                       seeds=(0, 1, 2), C=10.0)
    for k in (1, 2):
        assert res[k]['accs'] == pytest.approx([90.0] * 3)
        assert res[k]['mean'] == pytest.approx(90.0)
        assert res[k]['std'] == pytest.approx(0.0)


@pytest.mark.slow
def test_low_shot_fits_with_a_thousand_classes():
    """ImageNet-like shape (1000 classes, 768-d, 5 per class): scikit-learn's default
    tol (1e-4) stops L-BFGS before its first step there (0 iterations, chance accuracy);
    the protocol's tol lets it fit. Capped at 3 iterations to stay fast."""
    rng = np.random.default_rng(0)
    num_classes, dim = 1000, 768
    means = rng.standard_normal((num_classes, dim)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)  # as tools/low_shot.py --synthetic
    noise = 4.0 / np.sqrt(dim)
    train_y = np.repeat(np.arange(num_classes), 5)
    test_y = np.arange(num_classes)
    train_x = means[train_y] + noise * rng.standard_normal((len(train_y), dim), np.float32)
    test_x = means[test_y] + noise * rng.standard_normal((num_classes, dim), np.float32)
    kw = dict(shots=(5, ), seeds=(0, ), C=1.0, max_iter=3)
    stuck = low_shot_logistic_regression(train_x, train_y, test_x, test_y, tol=1e-4, **kw)
    assert stuck[5]['iterations'] == [0] and stuck[5]['mean'] <= 0.2  # the trap
    res = low_shot_logistic_regression(train_x, train_y, test_x, test_y, **kw)
    assert res[5]['iterations'][0] >= 1
    assert res[5]['mean'] > 5.0  # chance is 0.1%
