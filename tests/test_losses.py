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
    """Eqs. 7-9 with python floats: the mean over i in C, k in M of KL(p || q), and of the
    cross-entropy -sum_l p_l log q_l."""
    zt = [_unit(v) for v in text.tolist()]
    kl, ce, count = 0.0, 0.0, 0
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
            kl += sum(pl * math.log(pl / ql) for pl, ql in zip(p, q))
            ce += -sum(pl * math.log(ql) for pl, ql in zip(p, q))
            count += 1
    return kl / count, ce / count


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
    loss, ce = LanguageSpaceReconLoss(tau1, tau2, loss_weight=1.0)(
        pred, target, text, mask, aligned, return_cross_entropy=True)
    kl_expected, ce_expected = recon_by_equation(pred, target, text, mask, aligned, tau1, tau2)
    assert loss.item() == pytest.approx(kl_expected, rel=1e-5)  # the value is the KL
    assert ce.item() == pytest.approx(ce_expected, rel=1e-5)


def test_logged_kl_is_cross_entropy_minus_target_entropy():
    """KL(p || q) = CE(p, q) - H(p), H(p) = -sum_l p_l log p_l, averaged over C x M."""
    g = torch.Generator().manual_seed(13)
    pred, target = torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    text = torch.randn(6, 8, generator=g)
    mask, aligned = torch.rand(3, 5, generator=g) > 0.3, torch.tensor([True, True, False])
    lam = 0.5
    kl, ce = LanguageSpaceReconLoss(0.04, 0.1, loss_weight=lam)(
        pred, target, text, mask, aligned, return_cross_entropy=True)
    entropy, count = 0.0, 0
    zt = [_unit(v) for v in text.tolist()]
    for i in range(3):
        for k in range(5):
            if aligned[i] and mask[i, k]:
                f = _unit(target[i, k].tolist())
                e = [math.exp(_dot(f, z) / 0.04) for z in zt]
                p = [x / sum(e) for x in e]
                entropy += -sum(pl * math.log(pl) for pl in p)
                count += 1
    assert kl.item() == pytest.approx(ce.item() - lam * entropy / count, rel=1e-5)
    assert ce.item() > kl.item() > 0


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


def _plain_recon(pred, target, text, tau1, tau2):
    """Eq. 9 summed over rows with ordinary autograd: sg[p] . (log p - log q)."""
    with torch.no_grad():
        log_p = torch.log_softmax(target @ text.t() / tau1, dim=-1)
    log_q = torch.log_softmax(pred @ text.t() / tau2, dim=-1)
    ce = -(log_p.exp() * log_q).sum()
    return ce + (log_p.exp() * log_p).sum(), ce


@pytest.mark.parametrize('chunk_size', [1, 3, 7, 1000])
def test_chunked_recomputing_function_equals_plain_autograd(chunk_size):
    """PrototypeKLDivergence: same values and the same gradients (pred and texts) as
    autograd through the plain formula, for chunk sizes that do and do not divide K."""
    from rils_mm.models.losses.recon import PrototypeKLDivergence
    g = torch.Generator().manual_seed(7)
    K, T, D = 20, 9, 6
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    pred = unit(torch.randn(K, D, generator=g, dtype=torch.float64)).requires_grad_()
    target = unit(torch.randn(K, D, generator=g, dtype=torch.float64))
    text = unit(torch.randn(T, D, generator=g, dtype=torch.float64)).requires_grad_()
    w_kl, w_ce = 0.3, 1.7  # both outputs used: their gradients add up

    kl, ce = PrototypeKLDivergence.apply(pred, target, text, 0.04, 0.1, chunk_size)
    (w_kl * kl + w_ce * ce).backward()
    grads = pred.grad.clone(), text.grad.clone()
    pred.grad = text.grad = None

    kl_ref, ce_ref = _plain_recon(pred, target, text, 0.04, 0.1)
    (w_kl * kl_ref + w_ce * ce_ref).backward()
    torch.testing.assert_close(kl, kl_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ce, ce_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], pred.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], text.grad, rtol=1e-10, atol=1e-12)
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0


def test_recon_module_gradient_equals_plain_path_through_normalisation():
    """The module (selection, normalisation, lambda_2, |C||M|) backpropagates like the plain
    formula written with autograd."""
    g = torch.Generator().manual_seed(8)
    pred = torch.randn(3, 6, 5, generator=g, requires_grad=True)
    target = torch.randn(3, 6, 5, generator=g)
    text = torch.randn(4, 5, generator=g, requires_grad=True)
    mask, aligned = torch.rand(3, 6, generator=g) > 0.5, torch.tensor([True, False, True])
    LanguageSpaceReconLoss(0.04, 0.1, loss_weight=0.5, chunk_size=2)(
        pred, target, text, mask, aligned).backward()
    grads = pred.grad.clone(), text.grad.clone()
    pred.grad = text.grad = None
    sel = mask & aligned[:, None]
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    kl, _ = _plain_recon(unit(pred[sel]), unit(target[sel]), unit(text), 0.04, 0.1)
    (0.5 * kl / (sel.sum() + 1e-6)).backward()
    torch.testing.assert_close(grads[0], pred.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], text.grad, rtol=1e-5, atol=1e-7)


def test_losses_are_fp32_under_autocast():
    """Logits are computed in fp32 even inside a bf16 autocast region."""
    g = torch.Generator().manual_seed(9)
    pred, target = torch.randn(2, 6, 16, generator=g), torch.randn(2, 6, 16, generator=g)
    text, img = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    mask, aligned = torch.ones(2, 6), torch.tensor([True, True])
    recon = LanguageSpaceReconLoss()
    contra = ImageTextContrastiveLoss()
    ref = recon(pred, target, text, mask, aligned), contra(img, text, 100.0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = recon(pred, target, text, mask, aligned), contra(img, text, 100.0)
    for a, b in zip(out, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('local_loss,gather_with_grad', [(True, False), (False, True),
                                                         (True, True), (False, False)])
def test_contrastive_flags_agree_on_one_process(local_loss, gather_with_grad):
    """On one process the gather returns its input: every setting is the same loss with
    the same gradients (the official code is exact there too)."""
    g = torch.Generator().manual_seed(10)
    img = torch.randn(6, 8, generator=g, requires_grad=True)
    txt = torch.randn(6, 8, generator=g, requires_grad=True)
    scale = torch.tensor(math.log(10.0), requires_grad=True)  # log(1 / sigma)
    ImageTextContrastiveLoss()(img, txt, scale.exp()).backward()
    ref = img.grad.clone(), txt.grad.clone(), scale.grad.clone()
    img.grad = txt.grad = scale.grad = None
    loss = ImageTextContrastiveLoss(local_loss=local_loss,
                                    gather_with_grad=gather_with_grad)(img, txt, scale.exp())
    loss.backward()
    assert loss.item() == pytest.approx(contrastive_by_equation(img, txt, 10.0),
                                        rel=1e-5)
    for a, b in zip((img.grad, txt.grad, scale.grad), ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_recon_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match='chunk_size'):
        LanguageSpaceReconLoss(chunk_size=0)
