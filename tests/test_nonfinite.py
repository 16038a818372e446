"""Non-finite steps: a NaN / inf loss or gradient updates nothing, is counted and
logged with its iteration and loss term; K in a row stop the run."""
import copy
import logging
import os
import os.path as osp

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmpretrain.registry import OPTIM_WRAPPERS

from rils_mm.engine import AutocastOptimWrapper, FiniteStepOptimWrapper, NonFiniteStepError
from rils_mm.testing import ToyData, ToyModel, free_port
from rils_mm.utils.checkpoint import checkpoint_problem, load_from_local


class _NaNGrad(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float('nan'))


def _wrapper(cls=FiniteStepOptimWrapper, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, OPTIM_WRAPPERS.build(dict(type=cls.__name__, optimizer=optimizer, **kwargs))


def _step(model, wrapper, kind='good'):
    x = torch.ones(4, 3)
    with wrapper.optim_context(model):
        out = model(x)
    if kind == 'nan_grad':
        out = _NaNGrad.apply(out)
    loss = out.pow(2).mean()
    if kind == 'nan_loss':
        loss = loss * float('nan')
    if kind == 'inf_loss':
        loss = loss + float('inf')
    wrapper.update_params(loss)


def _snapshot(model, wrapper):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.optimizer.state_dict())


def _assert_same(a, b):
    (wa, oa), (wb, ob) = a, b
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for pid, st in oa['state'].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(ob['state'][pid][k])), k


@pytest.mark.parametrize('cls', [FiniteStepOptimWrapper, AutocastOptimWrapper])
def test_nonfinite_steps_update_nothing_and_are_counted(cls):
    model, wrapper = _wrapper(cls, max_consecutive_nonfinite=3)
    _step(model, wrapper)  # moments exist now
    before = _snapshot(model, wrapper)
    for kind, cause in [('nan_loss', 'non-finite loss (nan)'),
                        ('inf_loss', 'non-finite loss (inf)'),
                        ]:
        _step(model, wrapper, kind)
        _assert_same(before, _snapshot(model, wrapper))  # weights, moments, step count
        assert wrapper.last_skip['cause'] == cause
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert wrapper.num_nonfinite_steps == 2 and wrapper.consecutive_nonfinite == 2
    _step(model, wrapper)  # a good step is applied and resets the run of bad ones
    assert not torch.equal(before[0]['weight'], model.state_dict()['weight'])
    assert wrapper.consecutive_nonfinite == 0 and wrapper.last_skip is None
    before = _snapshot(model, wrapper)
    _step(model, wrapper, 'nan_grad')
    _assert_same(before, _snapshot(model, wrapper))
    assert wrapper.last_skip['cause'] == 'non-finite gradient (first: weight)'
    # Both counts travel with the optimiser state (so they are in every checkpoint): a
    # resumed run that meets two more bad steps stops at 3 in a row, as the unbroken run would.
    state = wrapper.state_dict()
    assert state['nonfinite_steps'] == 3 and state['consecutive_nonfinite'] == 1
    fresh_model, fresh = _wrapper(cls, max_consecutive_nonfinite=3)
    fresh_model.load_state_dict(model.state_dict())
    fresh.load_state_dict(state)
    assert fresh.num_nonfinite_steps == 3 and fresh.consecutive_nonfinite == 1
    _step(fresh_model, fresh, 'nan_loss')
    with pytest.raises(NonFiniteStepError, match='3 consecutive'):
        _step(fresh_model, fresh, 'inf_loss')


def test_k_consecutive_nonfinite_steps_stop_the_run():
    model, wrapper = _wrapper(max_consecutive_nonfinite=3)
    _step(model, wrapper, 'nan_loss')
    _step(model, wrapper, 'nan_grad')
    with pytest.raises(NonFiniteStepError) as e:
        _step(model, wrapper, 'inf_loss')
    msg = str(e.value)
    assert '3 consecutive optimiser steps were non-finite' in msg
    assert 'max_consecutive_nonfinite=3' in msg and 'last checkpoint' in msg


# ------------------------------------------------------------------ in a Runner
def _runner(work_dir, bad_iters, k=3):
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(nan_at_calls=bad_iters),  # loss_recon NaN there
        work_dir=str(work_dir),
        experiment_name=f'nonfinite_{osp.basename(str(work_dir))}',
        train_dataloader=dict(dataset=ToyData(8),
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2,
                              num_workers=0),
        optim_wrapper=dict(type='FiniteStepOptimWrapper', max_consecutive_nonfinite=k,
                           optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='NonFiniteStepHook')],
        default_scope='mmpretrain')


def _capture():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    return records, handler


@pytest.mark.slow  # a Runner
def test_runner_logs_the_iteration_and_term_and_stops_with_the_checkpoint_intact(tmp_path):
    # iteration 5 alone is skipped; 8, 9, 10 in a row stop the run (K = 3).
    runner = _runner(tmp_path, bad_iters=[5, 8, 9, 10])
    records, handler = _capture()
    MMLogger.get_current_instance().addHandler(handler)
    weights = {}

    def remember(runner_, batch_idx, data_batch=None, outputs=None):
        weights[runner_.iter] = runner_.model.linear.weight.detach().clone()
    hook = Hook()
    hook.after_train_iter = remember
    runner.register_hook(hook, priority='LOWEST')
    try:
        with pytest.raises(NonFiniteStepError, match='3 consecutive optimiser steps'):
            runner.train()
    finally:
        MMLogger.get_current_instance().removeHandler(handler)
    messages = [r.getMessage() for r in records]
    skipped = [m for m in messages if 'skipped the optimiser step' in m]
    assert skipped[0].startswith('Iteration 5: skipped the optimiser step (non-finite loss '
                                 '(nan)); non-finite terms: loss=nan, loss_recon=nan; '
                                 '1 consecutive, 1 in all')
    assert torch.equal(weights[5], weights[4])  # iteration 5 changed nothing
    assert not torch.equal(weights[6], weights[5])
    assert torch.equal(weights[9], weights[7])
    # Epoch 1 (iterations 4-7) was checkpointed with 1 skipped step; the run
    # stopped at iteration 10 before writing anything else.
    assert open(osp.join(tmp_path, 'last_checkpoint')).read().endswith('epoch_2.pth')
    ckpt_path = osp.join(tmp_path, 'epoch_2.pth')
    assert checkpoint_problem(ckpt_path) is None
    ckpt = load_from_local(ckpt_path)
    assert ckpt['optimizer']['nonfinite_steps'] == 1
    assert torch.equal(ckpt['state_dict']['linear.weight'], weights[7])
    assert not os.path.exists(osp.join(tmp_path, 'epoch_3.pth'))


# ------------------------------------------------------------------ two ranks
def _rank_worker(rank, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        ddp = nn.parallel.DistributedDataParallel(model)
        wrapper = FiniteStepOptimWrapper(
            optimizer=torch.optim.AdamW(model.parameters(), lr=0.1))
        results = []
        for it in range(3):
            x = torch.full((2, 3), float(rank + 1))
            with wrapper.optim_context(ddp):
                loss = ddp(x).pow(2).mean()
            if it == 1 and rank == 1:
                # Inf only in rank 1's loss, through a term whose gradient is
                # finite (clamp): only the all-reduced verdict can see it.
                loss = loss + torch.tensor(float('inf')).clamp(max=float('inf')).detach()
            wrapper.update_params(loss)
            results.append((model.weight.detach().clone(), wrapper.num_nonfinite_steps))
        torch.save(results, osp.join(out, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # 2 processes
def test_two_ranks_skip_together_when_one_rank_has_an_inf_loss(tmp_path):
    # fork: the children need no fresh import of the whole stack
    mp.start_processes(_rank_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0 = torch.load(osp.join(tmp_path, 'rank0.pt'))
    r1 = torch.load(osp.join(tmp_path, 'rank1.pt'))
    for (w0, n0), (w1, n1) in zip(r0, r1):
        assert torch.equal(w0, w1)  # the ranks never diverge
    assert [n for _, n in r0] == [0, 1, 1] and [n for _, n in r1] == [0, 1, 1]
    assert torch.equal(r0[1][0], r0[0][0])  # step 1 skipped on both ranks
    assert not torch.equal(r0[2][0], r0[1][0])
