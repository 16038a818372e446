"""Shared test set-up."""
import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _mmpretrain_default_scope():
    """Each test starts in the project's default scope, 'mmpretrain' (every config sets it).

    mmengine's current default scope is the most recently created one, so a test that
    builds an mmdet / mmseg / mmengine-scoped Runner would otherwise change where the
    next test's registries look.
    """
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield
