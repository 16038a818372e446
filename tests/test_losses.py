"""The two RILS objectives against the paper's equations written out plainly."""
import math

import pytest
import torch

from rils_mm.models.losses import (
    ImageTextContrastiveLoss,
    LanguageSpaceReconLoss,
    aligned_image_mask,
)


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def contrastive_by_equation(img, txt, scale):
    """Eqs. 5-6 with python floats: 1/2 (L_I2T + L_T2I)."""
    zi = [_unit(v) for v in img.tolist()]
    zt = [_unit(v) for v in txt.tolist()]
    B = len(zi)
    l_i2t = -sum(
        math.log(math.exp(scale * _dot(zi[i], zt[i])) /
                 sum(math.exp(scale * _dot(zi[i], zt[j])) for j in range(B)))
        for i in range(B)) / B
    l_t2i = -sum(
        math.log(math.exp(scale * _dot(zt[i], zi[i])) /
                 sum(math.exp(scale * _dot(zt[i], zi[j])) for j in range(B)))
        for i in range(B)) / B
    return 0.5 * (l_i2t + l_t2i)


def recon_by_equation(pred, target, text, mask, aligned, tau1, tau2):
    """Eqs. 7-9 with python floats: mean over i in C, k in M of -sum_l p_l log q_l."""
    zt = [_unit(v) for v in text.tolist()]
    total, count = 0.0, 0
    for i in range(pred.shape[0]):
        if not aligned[i]:
            continue
        for k in range(pred.shape[1]):
            if not mask[i, k]:
                continue
            f = _unit(target[i, k].tolist())
            g = _unit(pred[i, k].tolist())
            ep = [math.exp(_dot(f, z) / tau1) for z in zt]
            eq = [math.exp(_dot(g, z) / tau2) for z in zt]
            p = [e / sum(ep) for e in ep]
            q = [e / sum(eq) for e in eq]
            total += -sum(pl * math.log(ql) for pl, ql in zip(p, q))
            count += 1
    return total / count


@pytest.mark.parametrize('scale', [1.0, 1 / 0.07, 100.0])
def test_contrastive_matches_equations_5_6(scale):
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = ImageTextContrastiveLoss(loss_weight=1.0)(img, txt, torch.tensor(scale))
    assert loss.item() == pytest.approx(contrastive_by_equation(img, txt, scale), rel=1e-5)


def test_contrastive_weight_and_normalisation():
    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    base = ImageTextContrastiveLoss(loss_weight=1.0)(img, txt, 10.0)
    # scaling the inputs changes nothing (they are normalised); lambda_1 multiplies
    assert ImageTextContrastiveLoss(1.0)(3 * img, 0.5 * txt, 10.0).item() == pytest.approx(
        base.item(), rel=1e-6)
    assert ImageTextContrastiveLoss(2.0)(img, txt, 10.0).item() == pytest.approx(
        2 * base.item(), rel=1e-6)


def test_contrastive_perfect_pairs_give_low_loss():
    e = torch.eye(5)
    assert ImageTextContrastiveLoss()(e, e, 100.0).item() < 1e-6
    assert ImageTextContrastiveLoss()(e, e.roll(1, 0), 100.0).item() > 50


@pytest.mark.parametrize('tau1,tau2', [(0.04, 0.1), (0.5, 0.2)])
def test_recon_matches_equations_8_9(tau1, tau2):
    g = torch.Generator().manual_seed(3)
    B, N, D, T = 4, 6, 5, 7
    pred, target = torch.randn(B, N, D, generator=g), torch.randn(B, N, D, generator=g)
    text = torch.randn(T, D, generator=g)
    mask = torch.rand(B, N, generator=g) > 0.4
    aligned = torch.tensor([True, False, True, True])
    loss = LanguageSpaceReconLoss(tau1, tau2, loss_weight=1.0)(pred, target, text, mask,
                                                                aligned)
    expected = recon_by_equation(pred, target, text, mask, aligned, tau1, tau2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_recon_chunking_and_weight_do_not_change_the_value():
    g = torch.Generator().manual_seed(4)
    pred, target, text = (torch.randn(3, 10, 8, generator=g), torch.randn(3, 10, 8, generator=g),
                          torch.randn(5, 8, generator=g))
    mask, aligned = torch.ones(3, 10), torch.ones(3, dtype=torch.bool)
    full = LanguageSpaceReconLoss(loss_weight=1.0)(pred, target, text, mask, aligned)
    chunked = LanguageSpaceReconLoss(loss_weight=1.0, chunk_size=7)(pred, target, text, mask,
                                                                     aligned)
    weighted = LanguageSpaceReconLoss(loss_weight=0.5)(pred, target, text, mask, aligned)
    assert chunked.item() == pytest.approx(full.item(), rel=1e-6)
    assert weighted.item() == pytest.approx(0.5 * full.item(), rel=1e-6)
    # avg_factor replaces |C||M| (used across ranks)
    summed = LanguageSpaceReconLoss(loss_weight=1.0)(pred, target, text, mask, aligned,
                                                      avg_factor=1.0)
    assert summed.item() == pytest.approx(30 * full.item(), rel=1e-5)


def test_recon_no_gradient_into_target_and_into_pred():
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 4, 6, generator=g, requires_grad=True)
    target = torch.randn(2, 4, 6, generator=g, requires_grad=True)
    text = torch.randn(3, 6, generator=g, requires_grad=True)
    loss = LanguageSpaceReconLoss()(pred, target, text, torch.ones(2, 4),
                                    torch.tensor([True, True]))
    loss.backward()
    assert target.grad is None  # sg[p]
    assert pred.grad.abs().sum() > 0
    assert text.grad.abs().sum() > 0  # the loss itself lets it flow; the head detaches


def test_recon_is_exact_zero_with_graph_when_nothing_aligned():
    pred = torch.randn(2, 4, 6, requires_grad=True)
    loss = LanguageSpaceReconLoss()(pred, torch.randn(2, 4, 6), torch.randn(3, 6),
                                    torch.ones(2, 4), torch.tensor([False, False]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_recon_ignores_visible_patches_and_unaligned_images():
    g = torch.Generator().manual_seed(6)
    pred, target, text = (torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g),
                          torch.randn(3, 6, generator=g))
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]])
    aligned = torch.tensor([True, False])
    loss = LanguageSpaceReconLoss()(pred, target, text, mask, aligned)
    pred2 = pred.clone()
    pred2[0, 1] += 5  # visible patch of an aligned image
    pred2[1] += 5  # unaligned image
    assert LanguageSpaceReconLoss()(pred2, target, text, mask, aligned).item() == \
        pytest.approx(loss.item(), rel=1e-6)


def test_aligned_set_is_argmax_over_texts():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    # image 2's best text is text 0, not its own caption
    assert aligned_image_mask(img, txt).tolist() == [True, True, False]
