"""``annotate`` stage adapter: fills ``Utterance.emotion`` with the configured annotator (``annotator=...``).

For each utterance the stage builds an :class:`~mikupal.annotate.base.AnnotationRequest` (the face-crop clip
``faces/<id>.mp4`` with its audio when a face was found, else ``audio/<id>.flac``; transcript and language; the
transcripts of the ``annotator.context_utterances`` preceding utterances of the same video; the active label set;
``annotator.modalities``), asks ``annotator.rollouts`` rollouts and writes the majority vote
(:func:`~mikupal.annotate.base.aggregate`; tie rule in :mod:`mikupal.annotate.base`).

Stage-level keys of ``conf/annotator/*.yaml`` (the rest configures the backend):

* ``rollouts``: answers per utterance (votes); ``modalities``: subset of ``[video, audio, text]``;
* ``context_utterances``: preceding utterances shown as context (0: none);
* ``max_in_flight``: rollout requests running at once (API annotators; threads);
* ``max_cost``: USD this invocation may spend; when reached, no new request starts, the requests in flight finish
  and are recorded, and the stage stops cleanly (:class:`~mikupal.stage.StopStage`). Rerunning the same command
  resumes: answers already paid for come from the cache, so the spend so far is not repeated; each invocation may
  spend up to ``max_cost`` again. The run total is ``cost_usd`` in ``summary.json``. The requests in flight when
  the budget is reached may overshoot it by at most their own cost.

Execution: API annotators run rollouts on a thread pool (``max_in_flight`` workers, items yielded as they complete);
the local deterministic fusion annotator runs in the stage's thread in batches (one ask per utterance, its vote
repeated ``rollouts`` times).

Counters (summed into ``summary.json``): ``annotate.cost_usd``, ``annotate.input_tokens``,
``annotate.output_tokens``, ``annotate.requests``, ``annotate.retries``, ``annotate.uploads``,
``annotate.cache_hits``, ``annotate.validation_retries``.

Operational settings (budget, concurrency, rate limit, retries, timeouts, endpoint, key variable, cache folder,
prices) are left out of the stage's config hash, so changing them does not refuse a resume.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from omegaconf import OmegaConf

from mikupal.annotate.base import (
    AnnotationError,
    AnnotationRequest,
    Annotator,
    AnnotatorConfigError,
    RolloutAnswer,
    Usage,
    aggregate,
    check_modalities,
)
from mikupal.labels import LabelSet, as_label_set
from mikupal.records import Utterance
from mikupal.stage import Drop, Stage, StageContext, StopStage

log = logging.getLogger(__name__)

#: Prompt used when the config has no ``prompt`` group (e.g. a caller that builds the stage config by hand).
DEFAULT_PROMPT = "miku_pal_v2"

def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _natural(text: str) -> tuple:
    """Sort key comparing digit runs as numbers (``dia1_utt2`` before ``dia1_utt10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _target_class(annotator_cfg: Any) -> type:
    from hydra.utils import get_class

    target = annotator_cfg.get("_target_") if annotator_cfg is not None else None
    if not target:
        raise AnnotatorConfigError("annotator config has no _target_ (choose one with annotator=gemini|openai|fusion)")
    return get_class(str(target))


@dataclass
class _ItemState:
    item: Utterance
    request: AnnotationRequest
    answers: list[RolloutAnswer | None]
    pending: int
    usage: Usage = field(default_factory=Usage)
    error: BaseException | None = None
    abandoned: bool = False


class AnnotateStage(Stage):
    """Label each utterance's emotion (see the module docstring)."""

    name = "annotate"
    input_type = output_type = Utterance
    config_keys = ("annotator", "prompt", "labels")
    #: Annotator keys that do not change what an annotation is (left out of the config hash).
    operational_keys = tuple(f"annotator.{key}" for key in (
        "max_cost", "max_in_flight", "requests_per_minute", "rate_burst", "timeout", "retry", "base_url", "api_key_env",
        "cache_dir", "inline_max_bytes", "file_poll_interval", "file_poll_timeout", "delete_uploads", "prices",
        "text_batch_size", "threads", "workers",
    ))
    backend_group = "annotator"
    config_error = AnnotatorConfigError

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.backend: Annotator | None = None
        self._contexts: dict[str, tuple[str, ...]] | None = None
        self._spent = 0.0
        self._budget_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason: str | None = None

    # ------------------------------------------------------------------------------------------ configuration
    def stage_config(self) -> dict[str, Any]:
        """Annotator settings that define the output (:attr:`operational_keys` left out), label set, and the prompt
        if the annotator uses one (API annotators)."""
        config = super().stage_config()
        from mikupal.annotate.api import APIAnnotator

        try:
            uses_prompt = issubclass(_target_class(self.cfg.get("annotator")), APIAnnotator)
        except Exception:  # noqa: BLE001 - an unknown target fails clearly in setup(); hash the prompt meanwhile
            uses_prompt = True
        if not uses_prompt:
            config.pop("prompt")
        return config

    def _settings(self) -> dict[str, Any]:
        a = self.cfg.annotator
        rollouts = int(a.get("rollouts", 1) or 1)
        if rollouts < 1:
            raise AnnotatorConfigError(f"annotator.rollouts={rollouts}: must be >= 1")
        in_flight = int(a.get("max_in_flight", 1) or 1)
        if in_flight < 1:
            raise AnnotatorConfigError(f"annotator.max_in_flight={in_flight}: must be >= 1")
        context = int(a.get("context_utterances", 0) or 0)
        if context < 0:
            raise AnnotatorConfigError(f"annotator.context_utterances={context}: must be >= 0")
        max_cost = a.get("max_cost")
        if max_cost is not None and float(max_cost) < 0:
            raise AnnotatorConfigError(f"annotator.max_cost={max_cost}: must be >= 0 (or null for no budget)")
        return {
            "rollouts": rollouts,
            "max_in_flight": in_flight,
            "context_utterances": context,
            "max_cost": None if max_cost is None else float(max_cost),
            "modalities": check_modalities(list(a.get("modalities") or ["video", "audio", "text"])),
        }

    # ------------------------------------------------------------------------------------------ lifecycle
    def setup(self, ctx: StageContext) -> None:
        settings = self._settings()
        self.rollouts = settings["rollouts"]
        self.max_in_flight = settings["max_in_flight"]
        self.context_utterances = settings["context_utterances"]
        self.max_cost = settings["max_cost"]
        self.modalities = settings["modalities"]
        self.label_set: LabelSet = as_label_set(self.cfg.labels)
        super().setup(ctx)
        from mikupal.annotate.api import APIAnnotator

        if self.max_cost is not None and isinstance(self.backend, APIAnnotator) and not self.backend.has_price():
            model = self.backend.model
            self.teardown()
            raise AnnotatorConfigError(
                f"annotator.max_cost={self.max_cost} needs a price for model {model!r} in annotator.prices "
                "(USD per million input/output tokens); add one, or set annotator.max_cost=null"
            )
        try:
            self.backend.prepare(self.label_set)
        except BaseException:
            self.teardown()
            raise
        self._spent = 0.0
        self._stop.clear()
        self._stop_reason = None
        log.info("annotate: %s (%s), %d rollout(s), modalities %s, label set %s, up to %d request(s) in flight%s",
                 type(self.backend).__name__, self.backend.model_id, self.rollouts, sorted(self.modalities),
                 self.label_set.name, self.max_in_flight if self.backend.concurrent else 1,
                 f", budget ${self.max_cost:g}" if self.max_cost is not None else "")

    def teardown(self) -> None:
        super().teardown()
        self._contexts = None

    def backend_kwargs(self, ctx: StageContext | None = None) -> dict[str, Any]:
        """The annotator node's backend keys; API backends also get the prompt of ``cfg.prompt`` and, unless
        ``annotator.cache_dir`` is set, the answer cache ``<run_dir>/cache/annotate``."""
        from mikupal.annotate.api import APIAnnotator
        from mikupal.annotate.prompt import PromptTemplate

        cls = _target_class(self.cfg.get("annotator"))
        kwargs = super().backend_kwargs(ctx)
        if issubclass(cls, APIAnnotator):
            prompt_cfg = self.cfg.get("prompt")
            if prompt_cfg is None:
                log.info("annotate: no prompt config given; using conf/prompt/%s.yaml", DEFAULT_PROMPT)
                kwargs["prompt"] = PromptTemplate.load(DEFAULT_PROMPT)
            else:
                kwargs["prompt"] = PromptTemplate.from_config(_container(prompt_cfg))
            if not kwargs.get("cache_dir") and ctx is not None:
                kwargs["cache_dir"] = str(ctx.run_dir / "cache" / "annotate")
        return kwargs

    # ------------------------------------------------------------------------------------------ requests
    def request_for(self, item: Utterance, ctx: StageContext) -> AnnotationRequest:
        """The annotation request of an utterance (media paths made absolute; only those the modalities use).

        Raises:
            AnnotationError: a media file the request needs is missing from the run directory.
        """
        has_clip = item.face is not None and bool(item.face.clip)
        face_clip = ctx.path(item.face.clip) if has_clip and "video" in self.modalities else None
        audio = ctx.path(item.audio) if item.audio and "audio" in self.modalities else None
        for path, what in ((face_clip, "face clip"), (audio, "utterance audio")):
            if path is not None and not path.is_file():
                raise AnnotationError(f"{item.id}: {what} {ctx.relative(path)} is missing from the run directory")
        if self._contexts is None:
            self._contexts = self._context_map([], ctx)
        return AnnotationRequest(
            item_id=item.id,
            label_set=self.label_set,
            modalities=self.modalities,
            transcript=item.text,
            language=item.language,
            face_clip=face_clip,
            audio=audio,
            context=self._contexts.get(item.id, ()),
            words=tuple(item.words) if item.words else None,
            duration=item.duration,
        )

    def _context_map(self, items: Sequence[Utterance], ctx: StageContext) -> dict[str, tuple[str, ...]]:
        """Transcripts of the preceding utterances of the same video, per utterance id (all of the upstream stage's
        utterances count, not only the pending ones, so a resumed run builds the same prompts)."""
        n = getattr(self, "context_utterances", 0)
        if n <= 0:
            return {}
        pool = {u.id: u for u in self._upstream_utterances(ctx)}
        pool.update({u.id: u for u in items})
        by_video: dict[str, list[Utterance]] = defaultdict(list)
        for u in pool.values():
            by_video[u.video_id].append(u)
        contexts: dict[str, tuple[str, ...]] = {}
        for utterances in by_video.values():
            utterances.sort(key=lambda u: (u.start, _natural(u.id)))
            texts: list[str] = []
            for u in utterances:
                contexts[u.id] = tuple(texts[-n:])
                if u.text and u.text.strip():
                    texts.append(u.text.strip())
        return contexts

    def _upstream_utterances(self, ctx: StageContext) -> list[Utterance]:
        stages = list(self.cfg.get("stages") or [])
        if self.name not in stages or stages.index(self.name) == 0:
            return []
        from mikupal.runner import StageStore

        upstream = stages[stages.index(self.name) - 1]
        store = StageStore(ctx.run_dir, upstream, ctx.rank, ctx.world_size)
        if not store.dir.is_dir():
            return []
        records = store.outputs(Utterance, Stage.parent_key, Stage.output_key, set(store.done_entries()))
        return list(records.values())

    def _emotion_item(self, state: _ItemState) -> list[Utterance]:
        assert self.backend is not None
        answers = [a for a in state.answers if a is not None]
        if self.backend.deterministic:
            answers = answers[:1] * self.rollouts
        emotion = aggregate(answers, self.label_set, self.backend.model_id, self.backend.prompt_version)
        return [dataclasses.replace(state.item, emotion=emotion)]

    def _n_asks(self) -> int:
        assert self.backend is not None
        return 1 if self.backend.deterministic else self.rollouts

    def _charge(self, usage: Usage) -> None:
        """Add spend (thread-safe); reaching the budget sets the stop flag that keeps new requests from starting."""
        with self._budget_lock:
            self._spent += usage.cost_usd
            if self.max_cost is not None and self._spent >= self.max_cost and self._stop_reason is None:
                self._stop_reason = self._budget_message()
                self._stop.set()

    def _request_stop(self, reason: str) -> None:
        with self._budget_lock:
            if self._stop_reason is None:
                self._stop_reason = reason
                self._stop.set()

    def _rollout(self, request: AnnotationRequest, rollout: int) -> RolloutAnswer | None:
        """One rollout in a worker thread: skipped (``None``) once the stage is stopping; spend charged here."""
        from mikupal.annotate.api import FatalAPIError

        assert self.backend is not None
        if self._stop.is_set():
            return None
        try:
            answer = self.backend.annotate(request, rollout)
        except AnnotationError as e:
            self._charge(e.usage)
            if isinstance(e, FatalAPIError):
                self._request_stop(str(e))  # the runner / eval driver adds how to continue
            raise
        self._charge(answer.usage)
        return answer

    def _budget_message(self) -> str:
        return (f"annotator.max_cost=${self.max_cost:g} reached (${self._spent:.4f} spent by this invocation); "
                "answers already paid for are cached, so a rerun does not pay for them again")

    # ------------------------------------------------------------------------------------------ one item
    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        """Annotate one utterance, rollouts one after another (the sequential path).

        Raises:
            StopStage: the budget was reached or a fatal API error occurred (before this item, or between its
                rollouts: the item then stays pending, its finished rollouts are cached).
        """
        assert self.backend is not None, "setup() was not called"
        if self._stop.is_set():
            raise StopStage(self._stop_reason)
        request = self.request_for(item, ctx)
        state = _ItemState(item, request, [None] * self._n_asks(), self._n_asks())
        try:
            for r in range(self._n_asks()):
                answer = self._rollout(request, r)
                if answer is None:
                    raise StopStage(self._stop_reason)
                state.answers[r] = answer
                state.usage += answer.usage
        finally:
            self.backend.release(request)
        for key, value in state.usage.counters().items():
            ctx.count(key, value)
        return self._emotion_item(state)

    # ------------------------------------------------------------------------------------------ many items
    def map(self, items: Iterable[Utterance], ctx: StageContext
            ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        """Annotate items with up to ``annotator.max_in_flight`` rollout requests running at once.

        Items are yielded as they complete (not in input order). Once the budget is spent or a fatal API error
        (bad key, unknown model) occurs, no new request starts; the requests in flight finish and their items are
        yielded, queued ones are cancelled (their items stay pending), and :class:`StopStage` is raised.
        """
        items = list(items)
        self._contexts = self._context_map(items, ctx)
        assert self.backend is not None, "setup() was not called"
        if not self.backend.concurrent and self.backend.deterministic:
            yield from self._map_batched(items, ctx)
            return
        if self.max_in_flight <= 1 or not self.backend.concurrent:
            yield from super().map(items, ctx)
            return
        yield from self._map_concurrent(items, ctx)

    def _map_batched(self, items: list[Utterance], ctx: StageContext
                     ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        """Local deterministic backends (fusion): chunks of utterances through ``annotate_batch`` (one ask each)."""
        backend = self.backend
        assert backend is not None
        size = max(1, int(getattr(backend, "batch_size", 32)))
        for start in range(0, len(items), size):
            if self._stop.is_set():
                raise StopStage(self._stop_reason)
            chunk = items[start:start + size]
            requests: list[AnnotationRequest | None] = []
            failures: dict[int, BaseException] = {}
            for i, item in enumerate(chunk):
                try:
                    requests.append(self.request_for(item, ctx))
                except Exception as e:  # noqa: BLE001 - recorded as the item's error
                    failures[i] = e
                    requests.append(None)
            answers = backend.annotate_batch([r for r in requests if r is not None])
            answer_iter = iter(answers)
            for i, (item, request) in enumerate(zip(chunk, requests)):
                if request is None:
                    yield item, failures[i], {}
                    continue
                answer = next(answer_iter)
                backend.release(request)
                if isinstance(answer, BaseException):
                    yield item, answer, {}
                    continue
                self._charge(answer.usage)
                state = _ItemState(item, request, [answer], 0, usage=answer.usage)
                try:
                    result: Any = self._emotion_item(state)
                except Exception as e:  # noqa: BLE001 - recorded as the item's error
                    yield item, e, {}
                    continue
                yield item, result, answer.usage.counters()

    def _map_concurrent(self, items: list[Utterance], ctx: StageContext
                        ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        backend = self.backend
        assert backend is not None
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="annotate")
        futures: dict[Future, tuple[_ItemState, int]] = {}
        ready: deque[tuple[Utterance, Any, dict]] = deque()
        source = iter(items)
        window = 2 * self.max_in_flight  # queued rollouts, so a worker never waits for the next one
        exhausted = False
        try:
            while True:
                while not self._stop.is_set() and not exhausted and len(futures) < window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    try:
                        request = self.request_for(item, ctx)
                    except Exception as e:  # noqa: BLE001 - recorded as the item's error
                        ready.append((item, e, {}))
                        continue
                    n = self._n_asks()
                    state = _ItemState(item, request, [None] * n, n)
                    for r in range(n):
                        futures[pool.submit(self._rollout, request, r)] = (state, r)
                while ready:
                    yield ready.popleft()
                if not futures:
                    break
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in done:
                    state, r = futures.pop(future)
                    if future.cancelled():
                        state.pending -= 1
                        if state.pending == 0:
                            backend.release(state.request)
                        continue
                    error = future.exception()
                    if error is None:
                        answer = future.result()
                        if answer is None:  # skipped: the stage is stopping
                            state.abandoned = True
                            usage = Usage()
                        else:
                            state.answers[r] = answer
                            usage = answer.usage
                    else:
                        usage = getattr(error, "usage", None) or Usage()
                        state.error = state.error or error
                    state.usage += usage
                    state.pending -= 1
                    if state.pending == 0:
                        backend.release(state.request)
                        if state.abandoned:
                            continue
                        if state.error is not None:
                            yield state.item, state.error, {}
                        else:
                            try:
                                result: Any = self._emotion_item(state)
                            except Exception as e:  # noqa: BLE001 - recorded as the item's error
                                result = e
                            yield state.item, result, state.usage.counters() if not isinstance(result, Exception) \
                                else {}
                if self._stop.is_set():
                    self._cancel_queued(futures)
            if self._stop_reason is not None:
                raise StopStage(self._stop_reason)
        finally:
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _cancel_queued(futures: dict[Future, tuple[_ItemState, int]]) -> None:
        """Cancel rollouts that have not started; their items are abandoned (not yielded, so a rerun does them).

        An abandoned item's rollouts that are already running still finish (and are cached).
        """
        for future, (state, _) in futures.items():
            if future.cancel():
                state.abandoned = True


def build_annotator(cfg: Any, ctx: StageContext | None = None) -> Annotator:
    """The backend of ``cfg.annotator``, constructed as the annotate stage builds it (prompt and cache included).

    Raises:
        AnnotatorConfigError: no ``_target_``, or a key that is neither a backend argument nor a stage-level key.
    """
    return AnnotateStage(cfg).build_backends(ctx)["annotator"]
