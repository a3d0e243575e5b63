"""The pool's scheduler: :class:`PoolDispatcher`, an async Ray actor owning the N FID
actors (each a :class:`ganc.metrics.scoring.ScoringState` in a Ray actor), hands them the
specs of every caller, least busy actor first, and replaces an actor that dies or answers
no task within ``timeout_s`` (same inputs, same statistics), re-running its unfinished
work; after ``max_attempts`` tries of one spec the call fails."""
from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import GancError
from .scoring import ScoringState
from .specs import Score, SubnetSpec, failed_score, score_of

_ACTOR_CLASS = None
_DISPATCHER_CLASS = None
DISPATCHER_PREFIX = "ganc-fid-pool-"   # named actor: tests and tools find a running pool
START_TIMEOUT_S = 900.0     # an actor not up (Inception loaded) by then is replaced


def _actor_class():
    """The FID actor: a :class:`ScoringState` in a Ray actor (made on first use)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is not None:
        return _ACTOR_CLASS
    import ray      # deferred: Ray stays optional for in-process scoring

    @ray.remote
    class FidActor:
        def __init__(self, fid_opts, inputs, real):
            self.state = ScoringState(fid_opts, ray.get(inputs[0]),
                                       None if real is None else ray.get(real[0]))

        def compute_real(self, images):
            return self.state.compute_real(ray.get(images[0]))

        def set_real(self, real):
            self.state.set_real(ray.get(real[0]))

        def score(self, spec, entry, kid=None):
            return self.state.score(spec, entry, kid)

        def info(self):
            return {"pid": os.getpid(), "threads": torch.get_num_threads(),
                    "extractor": self.state.extractor.id,
                    "device": str(self.state.extractor.device)}

    _ACTOR_CLASS = FidActor
    return FidActor


@dataclass
class _Slot:
    actor: Any
    name: str
    bundle: int = 0                 # its bundle of the pool's placement group
    generation: int = 0
    inflight: int = 0
    ready: Any = None               # ObjectRef of its first info() call: it is up


class PoolDispatcher:
    """The pool's one scheduler: owns the FID actors and hands them work from any number
    of concurrent ``score`` calls (an async Ray actor, so the search's trials, the driver and
    a pruning scorer all reach the same actors through it, each call a batch of specs).

    - the least busy actor first, up to ``per_actor_queue`` tasks queued per actor (the next
      task is already there when one finishes: no idle gap between scorings);
    - an actor that dies (``ray.kill``, node loss, a crashed process) or does not answer
      within ``timeout_s`` (per task, counted from when it could start) is killed and
      replaced in its bundle, and its tasks go back to the front of the queue: an
      infrastructure failure never becomes a result; after ``max_attempts`` tries of one
      spec the call fails (its caller, e.g. a Tune trial, restarts from its checkpoint);
    - a spec whose own scoring fails (an exception in the model, a non-finite FID) is a
      result with ``status='failed'`` and its reason;
    - counts of restarts, timeouts, retries and failures are kept for the summary.
    """

    def __init__(self, opts: dict, inputs: list, real: Optional[list], num_actors: int,
                 actor_options: dict, pg, max_attempts: int, per_actor_queue: int,
                 timeout_s: float, prefix: str):
        self.opts = opts
        self.inputs = inputs            # [ObjectRef] (kept as a ref: actors fetch it)
        self.real = real                # [ObjectRef] of RealStats, or None until computed
        self.actor_options = actor_options
        self.pg = pg
        self.max_attempts = int(max_attempts)
        self.per_actor_queue = max(1, int(per_actor_queue))
        self.timeout_s = float(timeout_s)
        self.prefix = prefix
        self.serial = 0
        self.counts = {"restarts": 0, "timeouts": 0, "retries": 0, "failed": 0, "scored": 0}
        self.slots = []
        for i in range(num_actors):
            actor = self._new_actor(i)
            self.slots.append(_Slot(actor, self._name(), i, ready=actor.info.remote()))
        self._cond = None               # asyncio.Condition, made on the actor's event loop

    # --------------------------------------------------------- actors
    def _name(self) -> str:
        self.serial += 1
        return f"{self.prefix}-{self.serial}"

    def _new_actor(self, bundle: int):
        opts = dict(self.actor_options)
        if self.pg is not None:
            # deferred: Ray stays optional for in-process scoring
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=bundle)
        return _actor_class().options(**opts).remote(self.opts, self.inputs, self.real)

    def _replace(self, slot: _Slot, generation: int, why: str, detail: str = "") -> None:
        import ray      # deferred: Ray stays optional for in-process scoring
        if slot.generation != generation:       # already replaced by another task
            return
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        slot.actor = self._new_actor(slot.bundle)
        slot.ready = slot.actor.info.remote()
        old, slot.name = slot.name, self._name()
        slot.generation += 1
        slot.inflight = 0
        self.counts["restarts"] += 1
        if why == "timeout":
            self.counts["timeouts"] += 1
        print(f"[ganc] FID actor {old} {detail or why}; replaced by {slot.name}", flush=True)

    def actors(self) -> list:
        return [s.actor for s in self.slots]

    def names(self, busy: bool = False) -> list:
        return [s.name for s in self.slots if s.inflight > 0 or not busy]

    def stats(self) -> dict:
        return dict(self.counts, actors=len(self.slots))

    async def call_all(self, method: str, *args) -> list:
        """``method(*args)`` on every actor (e.g. info)."""
        return await asyncio.gather(*[getattr(s.actor, method).remote(*args)
                                      for s in self.slots]) if self.slots else []

    async def set_real(self, real: list) -> None:
        """The real statistics ([ObjectRef]): kept for the actors started from now on and
        handed to the current ones (one that died meanwhile is replaced with them)."""
        self.real = real
        await asyncio.gather(*[s.actor.set_real.remote(real) for s in self.slots],
                             return_exceptions=True)

    async def call_first(self, method: str, *args):
        return await getattr(self.slots[0].actor, method).remote(*args)

    # --------------------------------------------------------- scoring
    async def _acquire(self) -> _Slot:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                slot = min(self.slots, key=lambda s: s.inflight)
                if slot.inflight < self.per_actor_queue:
                    slot.inflight += 1
                    return slot
                await self._cond.wait()

    async def _release(self, slot: _Slot, generation: int) -> None:
        async with self._cond:
            if slot.generation == generation:
                slot.inflight = max(0, slot.inflight - 1)
            self._cond.notify_all()

    async def _one(self, i: int, spec: SubnetSpec, entry, kid) -> Score:
        import ray      # deferred: Ray stays optional for in-process scoring
        died = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        attempts = 0
        while True:
            slot = await self._acquire()
            attempts += 1
            gen, name, ahead = slot.generation, slot.name, slot.inflight
            try:
                # the timeout counts from when the actor is up (a new one loads Inception),
                # and the tasks queued ahead on it may use their share of the time
                await asyncio.wait_for(asyncio.wrap_future(slot.ready.future()),
                                       max(self.timeout_s, START_TIMEOUT_S))
                ref = slot.actor.score.remote(spec, entry, kid)
                res = await asyncio.wait_for(asyncio.wrap_future(ref.future()),
                                             self.timeout_s * ahead)
            except asyncio.TimeoutError:
                self._replace(slot, gen, "timeout",
                              f"gave no answer within {self.timeout_s * ahead:g}s on {spec}")
                res = None
            except died as e:
                if getattr(e, "actor_init_failed", False):
                    raise init_error(e) from None
                self._replace(slot, gen, "died")
                res = None
            except ray.exceptions.RayTaskError as e:
                await self._release(slot, gen)
                self.counts["failed"] += 1
                return failed_score(i, spec, str(unwrap_error(e, f"scoring {spec}")), name, attempts)
            await self._release(slot, gen)
            if res is not None:
                score = score_of(i, spec, res, name, attempts)
                if not math.isfinite(score.fid):
                    self.counts["failed"] += 1
                    score.status, score.error = "failed", f"FID is {score.fid} (not finite)"
                else:
                    self.counts["scored"] += 1
                return score
            if attempts >= self.max_attempts:
                raise GancError(f"spec {spec}: FID actors died or timed out {attempts} times "
                                "while scoring it")
            self.counts["retries"] += 1

    async def score(self, specs: list, entries: dict, kid: Optional[bool] = None,
                    real: Optional[list] = None) -> list:
        """One :class:`Score` per spec, in order (``entries``: model name -> [ObjectRef];
        ``real``: [ObjectRef] of the real statistics, which every call carries: a
        dispatcher restarted by Ray is built from its first arguments, from before the
        statistics were computed, and learns them here)."""
        if real is not None and self.real is None:
            await self.set_real(real)
        return list(await asyncio.gather(*[
            self._one(i, s, entries[s.model], kid) for i, s in enumerate(specs)]))

    def close(self) -> None:
        import ray      # deferred: Ray stays optional for in-process scoring
        for s in self.slots:
            try:
                ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self.slots = []


def dispatcher_class():
    """:class:`PoolDispatcher` as a Ray actor class (made on first use)."""
    global _DISPATCHER_CLASS
    if _DISPATCHER_CLASS is None:
        import ray      # deferred: Ray stays optional for in-process scoring
        _DISPATCHER_CLASS = ray.remote(PoolDispatcher)
    return _DISPATCHER_CLASS



def unwrap_error(e, what: str = "FID actor") -> GancError:
    """One line from a Ray task error: its GancError as it is, else its cause's first line."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, GancError):
        return cause
    if cause is not None:
        msg = str(cause).strip().splitlines()
        return GancError(f"{what} failed: {type(cause).__name__}: {msg[0][:200] if msg else ''}")
    return GancError(f"{what} failed: {str(e).strip().splitlines()[0][:200]}")


def init_error(e) -> GancError:
    """One line from an actor whose constructor raised (e.g. no Inception weights)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = next((ln for ln in reversed(lines) if "Error:" in ln), lines[-1] if lines else "")
    if ": " in msg and msg.split(": ", 1)[0].split(".")[-1].endswith("Error"):
        msg = msg.split(": ", 1)[1]
    return GancError(f"FID actor failed to start: {msg[:300]}")


__all__ = ["PoolDispatcher", "dispatcher_class", "unwrap_error", "init_error",
           "DISPATCHER_PREFIX", "START_TIMEOUT_S"]
