"""The shard runner: fixed shards of example indices, run in this process or as Ray tasks, each kept on
disk as it finishes so a long run survives interruption (``--resume DIR``).

- :func:`make_shards`, :class:`Shard`: the sharding (a function of the examples, never of the workers);
  random draws are keyed by example (:mod:`bastion.rng`, :data:`RNG_SCHEME`), not by shard;
- :class:`ModelRef` (:class:`TextModelRef`, :class:`TabularModelRef` for text and tabular models): a
  model named by its artifact, with the sha256 of its files, that workers load and verify (models never
  travel as pickled objects);
- :class:`LocalEngine`, :class:`RayEngine`, :func:`get_engine`: where shards run;
- :class:`RunDirectory`: a run's manifest and shard files (atomic writes, hashes, resume);
- :func:`run_shards`: skip, run, keep, gather; :func:`evaluate_sharded` (the evaluation cascade) and
  :func:`certify_sharded` (randomized smoothing, IBP, derandomized smoothing) and
  :func:`evaluate_text_sharded` (the text cascade) and :func:`evaluate_tabular_sharded` (the tabular
  cascade) on it.

Ray is optional (``pip install 'bastion[ray]'``) and imported only by :class:`RayEngine`.
"""

from __future__ import annotations

from bastion.engine.attack import AttackJob, ShardedAttack, attack_sharded
from bastion.engine.certification import CertifyJob, certify_sharded
from bastion.engine.engines import ENGINES, Engine, LocalEngine, RayEngine, ShardFailed, get_engine
from bastion.engine.evaluation import EvaluateJob, evaluate_sharded
from bastion.engine.model_ref import ModelRef, TabularModelRef, TextModelRef
from bastion.engine.rundir import RunDirectory, ShardOutput
from bastion.engine.runner import RunOutcome, run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards
from bastion.engine.tabular_evaluation import TabularEvaluateJob, evaluate_tabular_sharded
from bastion.engine.text_attack import TextAttackJob, attack_text_sharded
from bastion.engine.text_evaluation import TextEvaluateJob, evaluate_text_sharded

__all__ = [
    "ENGINES",
    "AttackJob",
    "CertifyJob",
    "Engine",
    "EvaluateJob",
    "LocalEngine",
    "ModelRef",
    "RayEngine",
    "RunDirectory",
    "RunOutcome",
    "RNG_SCHEME",
    "Shard",
    "ShardFailed",
    "ShardOutput",
    "ShardedAttack",
    "TabularEvaluateJob",
    "TabularModelRef",
    "TextAttackJob",
    "TextEvaluateJob",
    "TextModelRef",
    "attack_sharded",
    "attack_text_sharded",
    "certify_sharded",
    "evaluate_sharded",
    "evaluate_tabular_sharded",
    "evaluate_text_sharded",
    "get_engine",
    "make_shards",
    "run_shards",
]
