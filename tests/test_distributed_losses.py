"""Both losses on 2 CPU processes (gloo) against references written out per rank.

Every rank holds B of the B_g = 2B pairs. A rank's local inputs stand for the outputs of its
model replica; DDP averages parameter gradients over ranks, so what the parameters receive is
``(1/W) * sum_r J_r^T x_r.grad``: the reference below is therefore the gradient of
``(1/W) * sum_r L_r`` (official, per-rank losses) or of the one-process global-batch loss
(exact), and each rank's ``x_r.grad / W`` must equal its slice of it.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from rils_mm.testing import free_port

W, B, N, D = 2, 4, 6, 8
TAU1, TAU2, LAM2 = 0.04, 0.1, 0.5


def _inputs():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(W * B, D, generator=g), torch.randn(W * B, D, generator=g)
    pred, target = torch.randn(W * B, N, D, generator=g), torch.randn(W * B, N, D, generator=g)
    mask = torch.rand(W * B, N, generator=g) > 0.4
    # rank 0: 1 matched image, rank 1: 3 -> per-rank and global normalisers differ
    aligned = torch.tensor([False, True, False, False, True, True, False, True])
    log_scale = torch.tensor(2.5)
    return img, txt, pred, target, mask, aligned, log_scale


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=W)
    from rils_mm.models.losses import ImageTextContrastiveLoss, LanguageSpaceReconLoss
    img, txt, pred, target, mask, aligned, log_scale = _inputs()
    sl = slice(rank * B, (rank + 1) * B)
    out = {}
    for name, flags in [('official', dict(local_loss=True, gather_with_grad=False)),
                        ('exact', dict(local_loss=False, gather_with_grad=True))]:
        i_r = img[sl].clone().requires_grad_()
        t_r = txt[sl].clone().requires_grad_()
        s = log_scale.clone().requires_grad_()
        loss = ImageTextContrastiveLoss(**flags)(i_r, t_r, s.exp())
        loss.backward()
        out[f'contra_{name}'] = (loss.detach(), i_r.grad / W, t_r.grad / W, s.grad)
    text = txt  # the gathered prototypes z^T, detached as RILSHead passes them
    for name, local in [('official', True), ('global', False)]:
        p_r = pred[sl].clone().requires_grad_()
        loss, ce = LanguageSpaceReconLoss(TAU1, TAU2, LAM2, chunk_size=5, local_loss=local)(
            p_r, target[sl], text, mask[sl], aligned[sl], return_cross_entropy=True)
        loss.backward()
        out[f'recon_{name}'] = (loss.detach(), ce, p_r.grad / W)
    for k, v in out.items():  # DDP: parameter gradients (here logit_scale's) are averaged
        if k.startswith('contra'):
            dist.all_reduce(v[3])
            v[3].div_(W)
    torch.save(out, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('dist_losses')
    mp.spawn(_worker, nprocs=W, join=True, args=(free_port(), str(out_dir)))
    return [torch.load(out_dir / f'rank{r}.pt', weights_only=True) for r in range(W)]


def _cat(ranks, key, idx):
    return torch.cat([r[key][idx] for r in ranks])


def _official_contrastive_reference(img, txt, log_scale):
    """The official CLIPLoss, rank by rank: local rows x gathered (constant) columns, labels
    offset by rank; DDP averages the W losses."""
    s = log_scale.exp()
    all_img, all_txt = F.normalize(img, dim=-1).detach(), F.normalize(txt, dim=-1).detach()
    total = 0
    for r in range(W):
        i_r = F.normalize(img[r * B:(r + 1) * B], dim=-1)
        t_r = F.normalize(txt[r * B:(r + 1) * B], dim=-1)
        labels = r * B + torch.arange(B)
        total = total + 0.5 * (F.cross_entropy(s * i_r @ all_txt.t(), labels) +
                               F.cross_entropy(s * t_r @ all_img.t(), labels))
    return total / W


def _global_contrastive_reference(img, txt, log_scale):
    """One process holding the global batch."""
    logits = log_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    labels = torch.arange(W * B)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def _grads(fn):
    img, txt, _, _, _, _, log_scale = _inputs()
    img.requires_grad_()
    txt.requires_grad_()
    log_scale.requires_grad_()
    loss = fn(img, txt, log_scale)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, log_scale.grad


@pytest.mark.slow
@pytest.mark.parametrize('mode,reference', [('official', _official_contrastive_reference),
                                            ('exact', _global_contrastive_reference)])
def test_contrastive_two_ranks(ranks, mode, reference):
    key = f'contra_{mode}'
    loss, g_img, g_txt, g_scale = _grads(reference)
    for r in ranks:  # every rank reports the same value: the mean of the ranks' losses
        torch.testing.assert_close(r[key][0], loss, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(r[key][3], g_scale, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(_cat(ranks, key, 1), g_img, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(_cat(ranks, key, 2), g_txt, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_official_and_exact_contrastive_differ_across_ranks(ranks):
    """Same value, different gradients: the official gather detaches every slice."""
    torch.testing.assert_close(ranks[0]['contra_official'][0], ranks[0]['contra_exact'][0])
    official, exact = _cat(ranks, 'contra_official', 1), _cat(ranks, 'contra_exact', 1)
    assert (official - exact).norm() > 0.2 * exact.norm()


def _recon_terms(pred, target, text, mask, aligned):
    """Per-rank sums of KL(p || q) and of -sum p log q over i in C_r, k in M, and |C_r||M|."""
    out = []
    z = F.normalize(text, dim=-1)
    for r in range(W):
        sl = slice(r * B, (r + 1) * B)
        sel = mask[sl] & aligned[sl][:, None]
        log_p = torch.log_softmax(F.normalize(target[sl][sel], dim=-1) @ z.t() / TAU1, -1)
        log_q = torch.log_softmax(F.normalize(pred[sl][sel], dim=-1) @ z.t() / TAU2, -1)
        p = log_p.exp().detach()
        out.append(((p * (log_p - log_q)).sum(), -(p * log_q).sum(), sel.sum()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['official', 'global'])
def test_recon_normaliser_two_ranks(ranks, mode):
    """official: mean over ranks of lambda_2 * sum_r KL / (|C_r||M| + 1e-6);
    global: lambda_2 * sum KL / |C||M| over the whole batch (= one process)."""
    _, txt, pred, target, mask, aligned, _ = _inputs()
    pred.requires_grad_()
    terms = _recon_terms(pred, target, txt, mask, aligned)
    assert terms[0][2] != terms[1][2]  # the ranks select different numbers of patches
    if mode == 'official':
        loss = sum(LAM2 * kl / (n + 1e-6) for kl, _, n in terms) / W
        ce = sum(LAM2 * c / (n + 1e-6) for _, c, n in terms) / W
    else:
        n = sum(t[2] for t in terms)
        loss = LAM2 * sum(t[0] for t in terms) / n
        ce = LAM2 * sum(t[1] for t in terms) / n
    loss.backward()
    key = f'recon_{mode}'
    for r in ranks:
        torch.testing.assert_close(r[key][0], loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r[key][1], ce.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_cat(ranks, key, 2), pred.grad, rtol=1e-5, atol=1e-7)
    if mode == 'global':  # and the same as the module on one process with the whole batch
        from rils_mm.models.losses import LanguageSpaceReconLoss
        one = LanguageSpaceReconLoss(TAU1, TAU2, LAM2, local_loss=False)(
            pred.detach(), target, txt, mask, aligned)
        torch.testing.assert_close(ranks[0][key][0], one, rtol=1e-5, atol=1e-6)
