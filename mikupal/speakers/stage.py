"""``speakers`` stage adapter: speaker identity per utterance by clustering speaker embeddings within each video.

Utterance → the same Utterance with ``speaker`` set (:class:`~mikupal.records.Speaker`) or ``None``. The work is
per video, since speaker ids only mean something within one video:

1. every utterance of the video is embedded from its separated vocals ``audio/<id>.flac`` by the backend
   (``speakers._target_``; default Resemblyzer, :mod:`mikupal.speakers.resemblyzer`; or a user-supplied ONNX
   model, :mod:`mikupal.speakers.onnx`). Embeddings are cached in ``speakers/embeddings/<id>.npz``;
2. the embeddings are clustered (:mod:`mikupal.speakers.clustering`; ``speakers.clustering.distance_threshold``
   is a cosine distance, ``linkage`` the merge rule) into ``<video_id>-spkN``, numbered by first utterance;
3. each utterance gets its cluster id, its cosine similarity to the cluster centroid, and ``n_speakers``, the
   voices heard inside it (clusters of its partial-window embeddings, ``speakers.voices``);
4. ``speakers/videos/<video_id>.json`` records each cluster: its utterances and speech time, and the faces it
   co-occurs with, i.e. for each member utterance the face track the ``asd`` stage chose as the speaker
   (``face``: track id, median box, ASD score, clip) and every face track the ``faces`` stage saw in that window
   (``visible_tracks``). Face tracks are built per utterance window, so a cluster links to one track per
   utterance, not to a track spanning the video.

``speakers.workers`` utterances are embedded at once in threads (torch and WebRTC VAD release the GIL); each
embedding is computed exactly as alone, so the number of workers changes neither the output nor the config hash.

The stage processes a video's pending utterances together and clusters them with the video's utterances that
are already done (from their cached embeddings), so a resumed or retried run gives the same ids.

Never a failure and never a lost utterance: input the model cannot embed gives ``speaker: null`` and a counted
reason, ``speakers.skipped.too_short`` (less speech than the backend's minimum, 1.2 s for Resemblyzer: 75 % of its
1.6 s window) or ``speakers.skipped.silent``. A video with one embeddable utterance has one speaker. Utterances
whose audio cannot be read are item errors (``errors.jsonl``), as in every stage.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from omegaconf import OmegaConf

from mikupal.media import read_audio
from mikupal.records import Speaker, Utterance
from mikupal.speakers.base import Embedding, EmbeddingSkipped, SpeakerEmbedder
from mikupal.speakers.clustering import cluster, count_voices, similarity_to_centroid
from mikupal.stage import Drop, Stage, StageContext, StopStage, in_threads, write_atomic

log = logging.getLogger(__name__)



def embedding_path(utterance_id: str) -> str:
    """Run-directory-relative path of an utterance's cached embedding."""
    return f"speakers/embeddings/{utterance_id}.npz"


def video_report_path(video_id: str) -> str:
    """Run-directory-relative path of a video's speaker clusters."""
    return f"speakers/videos/{video_id}.json"


@dataclass
class _Entry:
    """One utterance of a video during clustering: its embedding, or why it has none."""

    utterance: Utterance
    embedding: Embedding | None = None
    skipped: str | None = None
    error: BaseException | None = None


class SpeakersStage(Stage):
    """Speaker clustering within each video (see the module docstring)."""

    name = "speakers"
    input_type = output_type = Utterance
    backend_group = "speakers"
    operational_keys = ("speakers.workers",)
    background_imports = ("sklearn.cluster",)  # the clustering (scikit-learn: 1.5-3 s to import)
    backend: SpeakerEmbedder

    def setup(self, ctx: StageContext) -> None:
        sc = self.cfg.speakers
        resolved = OmegaConf.to_container(sc, resolve=True)
        clustering = resolved.get("clustering") or {}
        voices = resolved.get("voices") or {}
        self.threshold = float(clustering.get("distance_threshold", 0.35))
        self.linkage = str(clustering.get("linkage", "average"))
        self.voice_threshold = float(voices.get("distance_threshold", 0.4))
        self.voice_min_partials = int(voices.get("min_partials", 2))
        for name, value in (("clustering", self.threshold), ("voices", self.voice_threshold)):
            if not 0.0 < value < 2.0:
                raise ValueError(f"speakers.{name}.distance_threshold is a cosine distance in (0, 2), got {value}")
        self.rate = int(self.cfg.media.sampling_rate)
        self.workers = self.worker_count("speakers.workers")
        super().setup(ctx)

    # ------------------------------------------------------------------------------------------ items
    def process(self, item: Utterance, ctx: StageContext) -> Sequence[Utterance] | Drop:
        """One utterance on its own (the stage normally runs whole videos through :meth:`map`)."""
        for _item, result, _counts in self.map([item], ctx):
            if isinstance(result, BaseException):
                raise result
            return result
        raise RuntimeError("unreachable")

    def map(
        self, items: Iterable[Utterance], ctx: StageContext
    ) -> Iterator[tuple[Utterance, Sequence[Utterance] | Drop | BaseException, dict]]:
        pending_by_video: dict[str, list[Utterance]] = defaultdict(list)
        for item in items:
            pending_by_video[item.video_id].append(item)
        done_by_video: dict[str, list[Utterance]] = defaultdict(list)
        for u in self._upstream_utterances(ctx):
            done_by_video[u.video_id].append(u)
        for video_id, pending in pending_by_video.items():
            pool = {u.id: u for u in done_by_video.get(video_id, [])}
            pool.update({u.id: u for u in pending})
            try:
                results = self._video(video_id, list(pool.values()), {u.id for u in pending}, ctx)
            except (StopStage, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - a failed video fails its pending items, the run goes on
                for item in pending:
                    yield item, e, {}
                continue
            for item in pending:
                yield results[item.id]

    def _video(
        self, video_id: str, utterances: list[Utterance], pending: set[str], ctx: StageContext
    ) -> dict[str, tuple[Utterance, Sequence[Utterance] | BaseException, dict]]:
        """Embed and cluster one video; the result of every pending utterance by id."""
        ordered = sorted(utterances, key=lambda u: (u.start, u.id))
        entries = list(in_threads(lambda u: self._entry(u, ctx, u.id in pending), ordered, self.workers, "speakers"))
        embedded = [e for e in entries if e.embedding is not None]
        speakers: dict[str, Speaker] = {}
        labels = np.zeros(0, dtype=int)
        if embedded:
            vectors = np.stack([e.embedding.vector for e in embedded])
            labels = cluster(vectors, self.threshold, self.linkage)
            sims = similarity_to_centroid(vectors, labels)
            for e, label, sim in zip(embedded, labels, sims):
                n_voices = count_voices(e.embedding.partials, self.voice_threshold, self.voice_min_partials, self.linkage)
                speakers[e.utterance.id] = Speaker(
                    id=f"{video_id}-spk{int(label)}", similarity=round(float(min(sim, 1.0)), 4), n_speakers=n_voices
                )
        self._write_report(video_id, entries, speakers, ctx)
        out: dict[str, tuple[Utterance, Sequence[Utterance] | BaseException, dict]] = {}
        for e in entries:
            u = e.utterance
            if u.id not in pending:
                continue
            if e.error is not None:
                out[u.id] = (u, e.error, {})
                continue
            counts: dict[str, float] = {}
            if e.skipped:
                counts[f"speakers.skipped.{e.skipped}"] = 1
            else:
                counts["speakers.embedded"] = 1
                if speakers[u.id].n_speakers > 1:
                    counts["speakers.multi_voice"] = 1
            out[u.id] = (u, [replace(u, speaker=speakers.get(u.id))], counts)
        return out

    def _entry(self, u: Utterance, ctx: StageContext, is_pending: bool) -> _Entry:
        """The utterance's embedding from the cache, or computed (and cached)."""
        cache = ctx.path(embedding_path(u.id))
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                skipped = str(z["skipped"])
                if skipped:
                    return _Entry(u, skipped=skipped)
                return _Entry(u, Embedding(z["vector"], z["partials"], float(z["speech_seconds"])))
        try:
            audio = read_audio(ctx.path(u.audio), self.rate)
            embedding: Embedding | None = self.backend.embed(audio, self.rate)
            skipped = ""
        except EmbeddingSkipped as e:
            log.info("speakers: %s: not embedded (%s: %s)", u.id, e.reason, e)
            embedding, skipped = None, e.reason
        except (StopStage, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - recorded as the pending item's error; a done item is left out
            if not is_pending:
                log.warning("speakers: %s (already done) cannot be embedded again, left out of clustering: %s", u.id, e)
            return _Entry(u, error=e)
        arrays: dict[str, Any] = {"skipped": np.array(skipped)}
        if embedding is not None:
            arrays.update(
                vector=embedding.vector.astype(np.float32),
                partials=embedding.partials.astype(np.float32),
                speech_seconds=np.array(embedding.speech_seconds),
            )
        write_atomic(cache, lambda tmp: np.savez(tmp, **arrays))
        if embedding is not None:  # use the stored (float32) values, so a resumed run clusters the same numbers
            embedding = Embedding(
                arrays["vector"].astype(np.float64), arrays["partials"].astype(np.float64), embedding.speech_seconds
            )
        return _Entry(u, embedding, skipped or None)

    # ------------------------------------------------------------------------------------------ report
    def _write_report(
        self, video_id: str, entries: list[_Entry], speakers: dict[str, Speaker], ctx: StageContext
    ) -> None:
        clusters: dict[str, dict[str, Any]] = {}
        for e in entries:
            u = e.utterance
            speaker = speakers.get(u.id)
            if speaker is None:
                continue
            c = clusters.setdefault(
                speaker.id, {"id": speaker.id, "utterances": [], "speech_seconds": 0.0, "faces": [], "visible_tracks": []}
            )
            c["utterances"].append(u.id)
            c["speech_seconds"] = round(c["speech_seconds"] + e.embedding.speech_seconds, 3)
            if u.face is not None:
                c["faces"].append({"utterance_id": u.id, **u.face.to_dict()})
            visible = _visible_tracks(ctx.path(f"faces/tracks/{u.id}.json"))
            if visible:
                c["visible_tracks"].append({"utterance_id": u.id, "tracks": visible})
        for c in clusters.values():
            c["face_coverage"] = round(len(c["faces"]) / len(c["utterances"]), 4)
        report = {
            "video_id": video_id,
            "backend": type(self.backend).__name__,
            "clustering": {"distance_threshold": self.threshold, "linkage": self.linkage, "metric": "cosine"},
            "speakers": list(clusters.values()),
            "skipped": {e.utterance.id: e.skipped for e in entries if e.skipped},
            "errors": {e.utterance.id: f"{type(e.error).__name__}: {e.error}" for e in entries if e.error is not None},
        }
        write_atomic(
            ctx.path(video_report_path(video_id)), lambda p: p.write_text(json.dumps(report, indent=1) + "\n")
        )

    def _upstream_utterances(self, ctx: StageContext) -> list[Utterance]:
        """Every finished utterance of the upstream stage (this shard's part included), to cluster whole videos."""
        stages = list(self.cfg.get("stages") or [])
        if self.name not in stages or stages.index(self.name) == 0:
            return []
        from mikupal.rundir import StageStore
        from mikupal.runner import load_stage

        upstream = load_stage(stages[stages.index(self.name) - 1], self.cfg)
        store = StageStore(ctx.run_dir, upstream.name, ctx.rank, ctx.world_size)
        if not store.dir.is_dir():
            return []
        records = store.outputs(upstream.output_type, upstream.parent_key, upstream.output_key)
        return [r for r in records.values() if isinstance(r, Utterance)]


def _visible_tracks(path: Path) -> list[dict[str, Any]]:
    """Face tracks the ``faces`` stage found in an utterance's window: id, frames, median box (none if not run)."""
    if not path.is_file():
        return []
    from mikupal.faces.artifact import WindowTracks

    window = WindowTracks.read(path)
    return [
        {"track_id": t.track_id, "frames": len(t), "box": [round(v, 1) for v in t.median_box()]} for t in window.tracks
    ]
