"""All geovr hook specifications (docstring-only).

Every hook except :func:`register_commands` receives a ``register`` callback::

    register(name, factory, *, config=None, aliases=(), summary=None)

* ``name``: the component name recipes use (``component = "name"``);
* ``factory``: a callable ``factory(config, context)`` or a lazy ``"package.module:attr"`` string that is
  imported only when the component is built (keeps ``import geovr`` and listings free of torch);
* ``config``: an attrs class validating the component's recipe table (cheap to import);
* ``aliases``: other names accepted in recipes; ``summary``: one line for ``geovr list-components``.

Plugins implement hooks with ``@geovr.hookimpl`` (``from geovr import hookimpl``; the marker is defined
here, beside the specifications, and re-exported by :mod:`geovr`). A plugin may implement any subset.
"""

from __future__ import annotations

import pluggy

#: Marker of the hook specifications below.
hookspec = pluggy.HookspecMarker("geovr")
#: Marker of plugin hook implementations: ``@geovr.hookimpl def register_teachers(register): ...``
hookimpl = pluggy.HookimplMarker("geovr")


@hookspec
def register_backbones(register):
    """Register student MLLM backbones (:class:`geovr.protocols.Backbone` factories).

    Example::

        @hookimpl
        def register_backbones(register):
            register("qwen2_5_vl", "my_plugin.backbone:build", config=QwenConfig)
    """


@hookspec
def register_teachers(register):
    """Register frozen teachers (:class:`geovr.protocols.Teacher` factories); also metric-depth
    teachers used in a recipe's ``[metric_teacher]`` table.

    Example::

        @hookimpl
        def register_teachers(register):
            register("vggt", "my_plugin.teacher:build", config=VGGTTeacherConfig)
    """


@hookspec
def register_objectives(register):
    """Register objectives (:class:`geovr.protocols.Objective` factories).

    Example::

        @hookimpl
        def register_objectives(register):
            register("normal_consistency", "my_plugin.loss:build", config=NormalConfig)
    """


@hookspec
def register_datasets(register):
    """Register dataset builders: ``factory(config, context)`` returns a ``torch.utils.data.Dataset``
    of sample dicts (see :func:`geovr.data.collate`).

    Example::

        @hookimpl
        def register_datasets(register):
            register("my_videos", "my_plugin.data:build", config=MyDataConfig)
    """


@hookspec
def register_trainers(register):
    """Register trainers: ``factory(config, context)`` returns an object with ``fit(context) -> dict``.

    Example::

        @hookimpl
        def register_trainers(register):
            register("my_trainer", "my_plugin.trainer:build", config=MyTrainerConfig)
    """


@hookspec
def register_evaluators(register):
    """Register evaluators: ``factory(config, context)`` returns an object with
    ``evaluate(backbone, output_dir) -> dict[str, float]``.

    Example::

        @hookimpl
        def register_evaluators(register):
            register("my_bench", "my_plugin.bench:build", config=MyBenchConfig)
    """


@hookspec
def register_callbacks(register):
    """Register training callbacks: ``factory(config, context)`` returns an object with any of the
    methods ``on_train_start(state)``, ``on_step_end(state)``, ``on_train_end(state)``. A callback
    runs only when a recipe lists it under ``[[callbacks]]``.

    Example::

        @hookimpl
        def register_callbacks(register):
            register("print_loss", "my_plugin.callbacks:PrintLoss")
    """


@hookspec
def register_commands(subparsers):
    """Add CLI verbs: ``subparsers`` is the ``argparse`` sub-parser action of ``geovr``. Set
    ``func`` with ``parser.set_defaults(func=callable(args) -> int)``.

    Example::

        @hookimpl
        def register_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: print("hello") or 0)
    """
