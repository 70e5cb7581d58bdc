"""Whether a module is a model wrapper (DDP and friends), by the ``MODEL_WRAPPERS`` registry."""

from __future__ import annotations

from torch import nn

from fengine.registry import MODEL_WRAPPERS, Registry

MODEL_WRAPPERS.register_module()(nn.DataParallel)
MODEL_WRAPPERS.register_module()(nn.parallel.DistributedDataParallel)


def _wrapper_classes(registry: Registry) -> tuple[type, ...]:
    own = tuple(obj for obj in registry.module_dict.values() if isinstance(obj, type))
    return own + tuple(cls for child in registry.children.values() for cls in _wrapper_classes(child))


def is_model_wrapper(model: object, registry: Registry = MODEL_WRAPPERS) -> bool:
    """Whether ``model`` is an instance of a class registered in ``registry`` or its children.

    A module that merely has a ``.module`` attribute is not a wrapper until its class is
    registered. Registered here: ``torch.nn.DataParallel``, ``DistributedDataParallel`` and
    fengine's :class:`~fengine.model.MMDistributedDataParallel`.

    Args:
        model: the object to test.
        registry: the registry to consult; its parent's entries are not included.

    Returns:
        ``True`` for a wrapper.
    """
    return isinstance(model, _wrapper_classes(registry))
