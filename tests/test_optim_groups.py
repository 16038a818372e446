"""Merged optimiser parameter groups (rils_mm.engine.optimizers.param_groups): the same
AdamW update and scheduled learning rates as mmengine's one group per parameter, bit for
bit, with and without layer decay; checkpoints of either layout resume into the other."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.optim import CosineAnnealingLR, LinearLR, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401
from rils_mm.engine.hooks import ParamGroupLayoutHook
from rils_mm.engine.optimizers import PER_PARAM_FLAG, param_group_layouts
from rils_mm.testing import ToyData, tiny_rils_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAPER = osp.join(ROOT, 'configs/rils/rils_vitb16_l20m.py')


def paper_optim_cfg(per_param=False, impl='fused'):
    """The paper config's optim_wrapper (plain OptimWrapper: AMP needs a GPU)."""
    ow = copy.deepcopy(Config.fromfile(PAPER).optim_wrapper)
    ow.type = 'OptimWrapper'
    ow.pop('loss_scale')
    ow.optimizer.pop('fused')
    ow.optimizer.update({'fused': dict(fused=True), 'foreach': dict(foreach=True),
                         'for-loop': dict(foreach=False)}[impl])
    if per_param:
        ow.paramwise_cfg.per_param_groups = True
    return ow


def tiny_rils():
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(tiny_rils_cfg())


class Detector(nn.Module):
    """A tiny ViT backbone (layer depths) and a head, for the layer-decay constructor."""

    def __init__(self):
        super().__init__()
        init_default_scope('mmpretrain')
        torch.manual_seed(0)
        self.backbone = MODELS.build(tiny_rils_cfg()['backbone'])
        self.head = nn.Linear(64, 4)


LAYER_DECAY = dict(constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
                   paramwise_cfg=dict(layer_decay_rate=0.7, flat_decay_mult=0.0,
                                      custom_keys={'pos_embed': dict(decay_mult=0.0)}),
                   optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1, fused=True))


def layer_decay_cfg(per_param=False):
    cfg = copy.deepcopy(LAYER_DECAY)
    cfg['paramwise_cfg']['per_param_groups'] = per_param
    return cfg


def schedulers(wrapper):
    """The paper's shape, per iteration: linear warm-up (3), cosine to eta_min (3..12)."""
    return [LinearLR(wrapper, start_factor=1e-3, by_epoch=False, begin=0, end=3),
            CosineAnnealingLR(wrapper, eta_min=1e-5, by_epoch=False, begin=3, end=12)]


def fake_grads(model, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype) if p.requires_grad else None


def lr_of(model, wrapper):
    lr = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    return {n: lr[id(p)] for n, p in model.named_parameters() if id(p) in lr}


def train(model, wrapper, scheds, steps, start=0):
    lrs = []
    for step in range(start, start + steps):
        fake_grads(model, step)
        wrapper.step()
        wrapper.zero_grad()
        for s in scheds:
            s.step()
        lrs.append(lr_of(model, wrapper))
    return lrs


def assert_same_params(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------- the grouping
def test_paper_config_merges_331_groups_into_decay_no_decay_and_logit_scale():
    model = tiny_rils()
    merged = build_optim_wrapper(model, paper_optim_cfg()).optimizer.param_groups
    per_param = build_optim_wrapper(model, paper_optim_cfg(per_param=True)).optimizer.param_groups
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(per_param) == len(trainable) and all(len(g['params']) == 1 for g in per_param)
    # decay (0.5), no decay (biases, norms, 1-d), the logit scale (its custom key's
    # decay_mult stays in its group, so it is a group of its own)
    assert [(g['weight_decay'], g.get('decay_mult')) for g in merged] == [
        (0.5, None), (0.0, None), (0.0, 0.0)]
    assert merged[2]['param_names'] == ['head.logit_scale']
    # every parameter once, in mmengine's order within each group, its name beside it
    names = dict((id(p), n) for n, p in model.named_parameters())
    assert sorted(n for g in merged for n in g['param_names']) == sorted(trainable)
    for g in merged:
        assert [names[id(p)] for p in g['params']] == g['param_names']
    wd = {id(g['params'][0]): g['weight_decay'] for g in per_param}
    for g in merged:
        assert all(wd[id(p)] == g['weight_decay'] for p in g['params'])


def test_layer_decay_merges_into_one_group_per_depth_and_decay():
    model = Detector()
    merged = build_optim_wrapper(model, layer_decay_cfg()).optimizer.param_groups
    per_param = build_optim_wrapper(model, layer_decay_cfg(True)).optimizer.param_groups
    keys = {(g['layer_id'], g['weight_decay']) for g in per_param}
    assert len(merged) == len(keys) < len(per_param)
    by_name = {g['param_name']: g for g in per_param}
    for g in merged:
        for name in g['param_names']:
            old = by_name[name]
            assert (old['lr'], old['lr_scale'], old['weight_decay'], old['layer_id']) == (
                g['lr'], g['lr_scale'], g['weight_decay'], g['layer_id']), name
    # L = 2 blocks: the head at lr, block i at lr * 0.7 ** (2 - i), embeddings 0.7 ** 3
    lrs = sorted({g['lr'] for g in merged})
    assert lrs == pytest.approx(sorted({1e-3 * 0.7**k for k in range(4)}))


# ---------------------------------------------------------------- the same update
@pytest.mark.parametrize('impl', ['fused', 'foreach', 'for-loop'])
def test_merged_groups_give_the_per_parameter_update_bit_for_bit(impl):
    """10 AdamW steps under the warm-up + cosine schedulers: equal weights (torch.equal:
    AdamW is element-wise, grouping changes no sum) and the same lr for every parameter
    after every scheduler step."""
    a = tiny_rils()
    b = copy.deepcopy(a)
    wa = build_optim_wrapper(a, paper_optim_cfg(per_param=True, impl=impl))
    wb = build_optim_wrapper(b, paper_optim_cfg(impl=impl))
    assert len(wa.optimizer.param_groups) > 10 * len(wb.optimizer.param_groups)
    lrs_a = train(a, wa, schedulers(wa), 10)
    lrs_b = train(b, wb, schedulers(wb), 10)
    assert lrs_a == lrs_b
    assert len({lr for lrs in lrs_a for lr in lrs.values()}) >= 8  # the lr really moved
    assert_same_params(a, b)
    assert not torch.equal(a.head.logit_scale, tiny_rils().head.logit_scale)


def test_merged_layer_decay_groups_give_the_per_parameter_update_bit_for_bit():
    a = Detector()
    b = copy.deepcopy(a)
    wa = build_optim_wrapper(a, layer_decay_cfg(True))
    wb = build_optim_wrapper(b, layer_decay_cfg())
    lrs_a = train(a, wa, schedulers(wa), 8)
    lrs_b = train(b, wb, schedulers(wb), 8)
    assert lrs_a == lrs_b
    assert len(set(lrs_a[-1].values())) == 4  # four depths, four learning rates
    assert_same_params(a, b)


# ---------------------------------------------------------------- old checkpoints
@pytest.mark.parametrize('saved_per_param', [True, False])
def test_state_of_one_layout_resumes_in_the_other(saved_per_param):
    """Save after 4 steps with one layout, load into the other (optimiser and scheduler
    states), go on 4 steps: the weights and lrs of 8 uninterrupted steps."""
    ref = Detector()
    w_ref = build_optim_wrapper(ref, layer_decay_cfg(saved_per_param))
    s_ref = schedulers(w_ref)
    train(ref, w_ref, s_ref, 4)
    saved = copy.deepcopy(dict(model=ref.state_dict(), optimizer=w_ref.state_dict(),
                               param_schedulers=[s.state_dict() for s in s_ref]))
    lrs_ref = train(ref, w_ref, s_ref, 4, start=4)

    model = Detector()
    wrapper = build_optim_wrapper(model, layer_decay_cfg(not saved_per_param))
    assert len(wrapper.optimizer.param_groups) != len(saved['optimizer']['param_groups'])
    scheds = schedulers(wrapper)
    model.load_state_dict(saved['model'])
    checkpoint = dict(optimizer=saved['optimizer'], param_schedulers=saved['param_schedulers'])
    runner = type('R', (), dict(optim_wrapper=wrapper, param_schedulers=scheds))()
    ParamGroupLayoutHook().after_load_checkpoint(runner, checkpoint)
    wrapper.load_state_dict(checkpoint['optimizer'])
    for s, state in zip(scheds, checkpoint['param_schedulers']):
        s.load_state_dict(state)
    ParamGroupLayoutHook().before_train(runner)  # one value per group
    assert lrs_ref == train(model, wrapper, scheds, 4, start=4)
    assert_same_params(ref, model)


def test_optimizer_load_maps_the_layout_without_the_hook():
    """The optimiser's own pre-hook: ``optim_wrapper.load_state_dict`` of a
    per-parameter state gives the same moments, step counts and lrs."""
    a = tiny_rils()
    wa = build_optim_wrapper(a, paper_optim_cfg(per_param=True))
    train(a, wa, [], 2)
    b = copy.deepcopy(a)
    wb = build_optim_wrapper(b, paper_optim_cfg())
    wb.load_state_dict(copy.deepcopy(wa.state_dict()))
    for name, p in a.named_parameters():
        q = dict(b.named_parameters())[name]
        for key, value in wa.optimizer.state[p].items():
            assert torch.equal(value, wb.optimizer.state[q][key]), (name, key)
    assert lr_of(a, wa) == lr_of(b, wb)


def test_a_state_of_another_model_is_refused_with_the_sizes():
    wrapper = build_optim_wrapper(Detector(), layer_decay_cfg())
    other = build_optim_wrapper(tiny_rils(), paper_optim_cfg())
    with pytest.raises(ValueError, match='neither its per-parameter nor its merged layout'):
        wrapper.load_state_dict(other.state_dict())
    layouts = param_group_layouts(wrapper.optimizer)
    state = copy.deepcopy(build_optim_wrapper(Detector(), layer_decay_cfg(True)).state_dict())
    state['param_groups'][1]['weight_decay'] = 0.123  # folds with group 0 here
    first_two = {id(p) for p in layouts.layouts['per_param'][0] + layouts.layouts['per_param'][1]}
    assert any(first_two <= {id(p) for p in g['params']} for g in wrapper.optimizer.param_groups)
    with pytest.raises(ValueError, match=r"saved groups 0 and 1 .* differ in \['weight_decay'\]"):
        wrapper.load_state_dict(state)


def test_before_train_stops_on_scheduler_values_of_another_layout():
    model = Detector()
    wrapper = build_optim_wrapper(model, layer_decay_cfg())
    sched = schedulers(wrapper)[0]
    sched.base_values = sched.base_values * 2
    runner = type('R', (), dict(optim_wrapper=wrapper, param_schedulers=[sched]))()
    with pytest.raises(RuntimeError, match='per-group values'):
        ParamGroupLayoutHook().before_train(runner)


# ---------------------------------------------------------------- a Runner resume
class Net(BaseModel):
    """Linear -> LayerNorm -> Linear head: weights, biases, norms (6 groups per parameter,
    3 merged: decay, no decay, the head at lr_mult 2)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        y = self.head(self.norm(self.linear(x / 8)))
        return dict(loss=(y - 1).pow(2).mean())


def _runner(work_dir, per_param, resume_from=None):
    """``per_param=None``: mmengine's own DefaultOptimWrapperConstructor (the code
    that wrote the checkpoints before merged groups)."""
    torch.manual_seed(0)
    paramwise_cfg = dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                         custom_keys={'head': dict(lr_mult=2.0)})
    if per_param is not None:
        paramwise_cfg[PER_PARAM_FLAG] = per_param
    return Runner(
        model=Net(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(8), batch_size=2, num_workers=0,
                              sampler=dict(type='ResumableSampler', shuffle=True)),
        optim_wrapper=dict(
            type='FiniteStepOptimWrapper',
            constructor=('DefaultOptimWrapperConstructor' if per_param is None
                         else 'MergedParamGroupsOptimWrapperConstructor'),
            optimizer=dict(type='AdamW', lr=0.05, weight_decay=0.1),
            paramwise_cfg=paramwise_cfg),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                              end=4),
                         dict(type='CosineAnnealingLR', eta_min=1e-3, by_epoch=False,
                              begin=4, end=12)],
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           interval_iters=3)),
        custom_hooks=[dict(type='ParamGroupLayoutHook')],
        randomness=dict(seed=0), resume=resume_from is not None, load_from=resume_from,
        default_scope='mmpretrain')


@pytest.mark.slow  # Runners
def test_runner_resumes_a_per_parameter_checkpoint_into_merged_groups(tmp_path):
    """A checkpoint of mmengine's per-parameter groups (iteration 6 of 12), resumed
    with merged groups, ends with the uninterrupted runs' weights and schedulers."""
    old = _runner(tmp_path / 'old', per_param=None)  # mmengine's constructor
    old.train()
    assert len(old.optim_wrapper.optimizer.param_groups) == 6
    assert param_group_layouts(old.optim_wrapper.optimizer) is None
    flagged = _runner(tmp_path / 'flag', per_param=True)
    flagged.train()
    assert [g['params'] for g in flagged.optim_wrapper.state_dict()['param_groups']] == [
        g['params'] for g in old.optim_wrapper.state_dict()['param_groups']]
    ref = _runner(tmp_path / 'ref', per_param=False)
    ref.train()
    assert len(ref.optim_wrapper.optimizer.param_groups) == 3
    resumed = _runner(tmp_path / 'new', per_param=False,
                      resume_from=str(tmp_path / 'old' / 'iter_6.pth'))
    resumed.train()
    assert resumed.iter == 12
    for (name, v), w, u, f in zip(ref.model.state_dict().items(),
                                  resumed.model.state_dict().values(),
                                  old.model.state_dict().values(),
                                  flagged.model.state_dict().values()):
        assert torch.equal(v, w) and torch.equal(v, u) and torch.equal(v, f), name
    for s_ref, s_new in zip(ref.param_schedulers, resumed.param_schedulers):
        assert s_new.base_values == s_ref.base_values
        assert s_new.get_last_value() == s_ref.get_last_value()
    # the 3 groups, then mmengine's base_param_settings (not the 7 saved values)
    assert ref.param_schedulers[0].base_values == [0.05, 0.05, 0.1, 0.05]
