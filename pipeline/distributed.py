"""Gallery builds on Ray Data: the same featuriser on many workers, the same cache on disk.

``python -m pipeline gallery build DIR --engine ray [--address ADDRESS]`` routes the "compute convnet
activations" step of :func:`pipeline.gallery.build_gallery` here; scanning, hashing, the resume logic
(content hashes already in the cache are not recomputed), shards, consolidation and the manifest stay
the local code's, so a Ray build and a local build of the same images write the same files.

How it runs:

* ``ray.data.from_items([{path, sha256}, ...]).map_batches(Featuriser, compute=ActorPoolStrategy(size=N),
  batch_size=settings.batch_size)``: :class:`Featuriser` is a callable class, so each worker (actor)
  loads the classifier once (:func:`pipeline.models.convnet.load_classifier`, the same weights and
  the same ONNX file name as the local build) and decodes with the same safe
  :func:`pipeline.images.load_image` and ``classifier.preprocess``.
* Where the cluster has GPUs (and ``--device`` is ``auto`` or ``cuda``), one worker per GPU with
  ``num_gpus=1``, running torch on CUDA; otherwise one single-threaded worker per CPU, so that
  decoding and inference of different batches keep every core busy without oversubscription.
* With BLIP captions (``--captioner blip``, or ``auto`` choosing BLIP), the missing captions are
  computed the same way by :class:`Captioner` (one ``BlipCaptioner`` per worker, placed like the
  featurisers) and merged by the driver into the same ``captions-<blip>.json`` cache; label and
  file captions stay on the driver (see :func:`pipeline.captions.caption_gallery`).
* The driver streams the results back in chunks of :data:`pipeline.features.CHUNK` and saves each as
  a shard (:meth:`pipeline.features.FeatureTable.add_shard`) at once: an interrupted Ray build resumes
  like a local one, by either engine.

Workers read the image files by path: on a real cluster every worker must see ``DIR`` at the same
absolute path (a shared filesystem), and have the project's requirements installed (the ``pipeline``
package itself is shipped to the workers through ``runtime_env={"py_modules": [...]}`` when this
process starts or joins Ray; a process that called ``ray.init`` itself must make ``pipeline``
importable on the workers, as a local instance does from the driver's ``sys.path``). A worker
that cannot see a file stops the build with a message saying so, rather than marking the image bad.
"""
from __future__ import annotations

import logging
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import Settings
from .errors import CaptionerUnavailable, ImageError, RayBuildError, RayWorkerFileError, error_line
from .features import CHUNK
from .images import load_image
from .models import resolve_device
from .models.captioners import BlipCaptioner
from .models.convnet import load_classifier

PACKAGE_DIR = Path(__file__).resolve().parent


class Featuriser:
    """Ray Data callable class: images (paths) in, pooled activations and logits out.

    Constructed once per worker: loads the classifier (``backbone`` on ``device``; ``threads`` CPU
    threads for the ONNX session). Called on batches ``{"path": (n,) str, "sha256": (n,) str}``;
    returns ``{"sha256", "ok" (bool), "reason" (str, why an image was rejected), "model" (the
    weights' model key), "pooled" (n, P) float32, "logits" (n, 1000) float32}`` (zeros where not ok).
    """

    def __init__(self, backbone: str, device: str, cache_dir: str, max_pixels: int, max_bytes: int,
                 threads: int | None = None):
        self.device = resolve_device(device)
        self.classifier = load_classifier(backbone, self.device, Path(cache_dir), threads=threads)
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        _check_visible(paths)
        n = len(paths)
        images, good, reasons = [], [], [""] * n
        for i, path in enumerate(paths):
            try:
                images.append(load_image(path, max_pixels=self.max_pixels, max_bytes=self.max_bytes,
                                         min_short_side=self.classifier.decode_short_side))
                good.append(i)
            except ImageError as exc:
                reasons[i] = str(exc)
        pooled = np.zeros((n, self.classifier.pooled_dim), np.float32)
        logits = np.zeros((n, 1000), np.float32)
        if images:
            out = self.classifier.run(self.classifier.preprocess(images))
            pooled[good], logits[good] = out.pooled, out.logits
        ok = np.zeros(n, dtype=bool)
        ok[good] = True
        return {"sha256": np.asarray(batch["sha256"]).astype(str), "ok": ok, "reason": np.array(reasons, dtype=str),
                "model": np.array([self.classifier.model_key] * n, dtype=str), "pooled": pooled, "logits": logits}


class Captioner:
    """Ray Data callable class: images (paths) in, BLIP captions out.

    Constructed once per worker: loads ``BlipCaptioner(model, device, max_new_tokens)`` (the same
    class and weights as a local build; :class:`CaptionerUnavailable` when it cannot). Called on
    batches ``{"path": (n,) str, "sha256": (n,) str}``; decodes with :func:`pipeline.images.load_image`
    (``max_pixels``, as the local captioning does) and returns ``{"sha256", "caption", "captioner"}``.
    """

    def __init__(self, model: str, device: str, max_new_tokens: int, max_pixels: int):
        self.blip = BlipCaptioner(model, device=device, max_new_tokens=max_new_tokens)
        self.max_pixels = max_pixels

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        _check_visible(paths)
        captions = self.blip.caption([load_image(path, max_pixels=self.max_pixels) for path in paths])
        return {"sha256": np.asarray(batch["sha256"]).astype(str), "caption": np.array(captions, dtype=object),
                "captioner": np.array([self.blip.name] * len(paths), dtype=str)}


def _check_visible(paths: list[str]) -> None:
    """On a worker: RayWorkerFileError unless every one of ``paths`` exists here (a worker that cannot
    see a file stops the build and says why, rather than marking the image bad)."""
    for path in paths:
        if not os.path.exists(path):
            raise RayWorkerFileError(
                f"Ray worker on {socket.gethostname()} cannot see {path}: with --engine ray every worker "
                f"must see the gallery folder at the same path (a shared filesystem)")


def plan_workers(resources: dict, device: str) -> dict:
    """How to place featurisers on a cluster with ``resources`` (``ray.cluster_resources()``):
    ``{"workers", "device", "threads", "remote_args"}``. GPUs when there are any and ``device`` allows
    (one worker per GPU, ``num_gpus=1``); else one single-threaded worker per CPU (``num_cpus=1``)."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if device == "cuda" and gpus == 0:
        raise RayBuildError("--device cuda was asked for, but the Ray cluster has no GPUs. Use --device auto or cpu.")
    if gpus > 0 and device in ("auto", "cuda"):
        return {"workers": gpus, "device": "cuda", "threads": None, "remote_args": {"num_gpus": 1}}
    return {"workers": cpus, "device": "cpu", "threads": 1, "remote_args": {"num_cpus": 1}}


def compute_features_ray(root: Path, todo: list[tuple[str, str]], table, settings: Settings, progress,
                         address: str | None = None, workers: int | None = None) -> None:
    """Compute activations for ``todo`` [(relative path, sha256)] under ``root`` on Ray and save them
    as shards of ``table`` (a :class:`pipeline.features.FeatureTable`) as they arrive.

    ``address``: an existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); None joins the
    Ray instance this process already started, else starts a local one on this machine's cores.
    ``workers`` overrides the number of featurisers (default: see :func:`plan_workers`).
    Raises RayBuildError with a plain message when Ray cannot start or a worker fails.
    """
    with _ray_session(address) as ray:
        plan, placement = _pool(ray, settings, len(todo), settings.batch_size, workers)
        items = [{"path": str(Path(root) / relative), "sha256": digest} for relative, digest in todo]
        dataset = ray.data.from_items(items).map_batches(
            Featuriser,
            fn_constructor_kwargs={"backbone": settings.backbone, "device": plan["device"],
                                   "cache_dir": str(settings.cache_dir), "max_pixels": settings.max_pixels,
                                   "max_bytes": settings.max_file_bytes, "threads": plan["threads"]},
            batch_size=settings.batch_size, batch_format="numpy", **placement,
        )
        done = 0
        progress(0, len(todo), "computing activations")
        for batch in dataset.iter_batches(batch_size=CHUNK, batch_format="numpy"):
            models = set(np.asarray(batch["model"]).tolist())
            if models - {table.model_key}:
                raise RayBuildError(f"Ray workers computed with weights {sorted(models)} but this cache is for "
                                    f"{table.model_key}: install the same requirements on the cluster")
            ok = np.asarray(batch["ok"], dtype=bool)
            hashes = np.asarray(batch["sha256"]).astype(str)
            rejected = {h: str(r) for h, r, good in zip(hashes, batch["reason"], ok) if not good}
            pooled = np.asarray(batch["pooled"], dtype=np.float32)[ok]
            logits = np.asarray(batch["logits"], dtype=np.float32)[ok]
            table.add_shard(list(hashes[ok]), pooled if ok.any() else None, logits if ok.any() else None, rejected)
            done += len(hashes)
            progress(done, len(todo), "computing activations")


def caption_blip_ray(todo: list[tuple[str, str]], settings: Settings, blip_name: str, save, progress,
                     address: str | None = None, chunk: int = 16) -> None:
    """BLIP captions for ``todo`` [(absolute path, sha256)] on Ray workers (one :class:`Captioner`, so
    one BLIP, per worker; one per GPU where the cluster has them). ``save({sha256: caption})`` is
    called on the driver for every ``chunk`` captions as they arrive (the caller merges them into its
    cache, so an interrupted build resumes). ``blip_name`` is the name the driver expects
    (``blip:<model>``): workers that loaded something else stop the build.
    Raises RayBuildError (Ray or a worker failed) or CaptionerUnavailable (a worker could not load BLIP)."""
    with _ray_session(address) as ray:
        plan, placement = _pool(ray, settings, len(todo), chunk)
        dataset = ray.data.from_items([{"path": path, "sha256": digest} for path, digest in todo]).map_batches(
            Captioner,
            fn_constructor_kwargs={"model": settings.blip_model, "device": plan["device"],
                                   "max_new_tokens": settings.blip_max_new_tokens, "max_pixels": settings.max_pixels},
            batch_size=chunk, batch_format="numpy", **placement,
        )
        done = 0
        progress(0, len(todo), "captioning with BLIP")
        for batch in dataset.iter_batches(batch_size=chunk, batch_format="numpy"):
            names = set(np.asarray(batch["captioner"]).astype(str).tolist())
            if names - {blip_name}:
                raise RayBuildError(f"Ray workers captioned with {sorted(names)}, expected {blip_name}")
            hashes = np.asarray(batch["sha256"]).astype(str).tolist()
            save(dict(zip(hashes, (str(c) for c in batch["caption"]))))
            done += len(hashes)
            progress(done, len(todo), "captioning with BLIP")


@contextmanager
def _ray_session(address: str | None):
    """``ray``, initialised: joins ``address`` (or the instance this process already started), else
    starts a local one on this machine's cores, and shuts down on exit what it started. Failures of
    Ray itself (or of a worker) come out as :class:`RayBuildError` with a plain message."""
    try:
        # deferred: ray is an optional dependency (requirements-test.txt), needed only by --engine ray
        import ray
        import ray.data
    except ImportError as exc:
        raise RayBuildError("--engine ray needs the ray package: pip install 'ray[data]' "
                            "(the version pinned in requirements.txt)") from exc

    started_here = False
    if not ray.is_initialized():
        try:
            # The pipeline package travels to the workers with the job (py_modules).
            options = {"runtime_env": {"py_modules": [str(PACKAGE_DIR)]}, "logging_level": logging.WARNING,
                       "log_to_driver": False}
            if address:
                _check_reachable(address)
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **options)
        except RayBuildError:
            raise
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RayBuildError(f"could not start {where} ({error_line(exc, cause=True)}). "
                                "Check --address, or build with --engine local.") from exc
        started_here = True
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines on stderr
        yield ray
    except (RayBuildError, CaptionerUnavailable):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            cause = _root_cause(exc)
            if cause.startswith("CaptionerUnavailable: "):  # a worker could not load BLIP: say so, as locally
                message = cause[len("CaptionerUnavailable: "):]
                raise CaptionerUnavailable(message, reason=message.split(". Use --captioner")[0]) from exc
            if cause.startswith("RayWorkerFileError: "):  # a worker cannot see a file: its message says why
                raise RayWorkerFileError(cause[len("RayWorkerFileError: "):]) from exc
            raise RayBuildError(f"the Ray build failed: {cause}") from exc
        raise
    finally:
        if started_here:
            ray.shutdown()


def _pool(ray, settings: Settings, n_items: int, batch_size: int, workers: int | None = None) -> tuple[dict, dict]:
    """The worker plan (:func:`plan_workers`) and the ``map_batches`` placement arguments for
    ``n_items`` items in batches of ``batch_size``: no more actors than batches."""
    plan = plan_workers(ray.cluster_resources(), settings.device)
    size = max(1, min(workers or plan["workers"], -(-n_items // batch_size)))
    return plan, {"compute": ray.data.ActorPoolStrategy(size=size), **plan["remote_args"]}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when a ``host:port`` or ``ray://host:port`` address
    does not answer; ``auto`` and other forms are left to Ray."""
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayBuildError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}). Check --address "
                            "(ray://HEAD:10001 for Ray Client, HEAD:6379 or auto on a cluster node), "
                            "or build with --engine local.") from exc


def _root_cause(exc: BaseException) -> str:
    """The worker's own error, "Name: message", out of Ray's wrappers (the remote traceback travels
    as text inside them); else the innermost error's last line."""
    chain, seen = [], exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = getattr(seen, "cause", None) or seen.__cause__
    text = "\n".join(str(e) for e in chain)
    raised = [m for m in re.findall(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", text, flags=re.M)
              if m[0].rsplit(".", 1)[-1] not in ("UserCodeException", "RayTaskError", "SystemException")]
    if raised:
        name, message = raised[-1]
        return f"{name.rsplit('.', 1)[-1]}: {message.strip()}"[:400]
    lines = [line.strip() for line in str(chain[-1]).splitlines() if line.strip()]
    return (lines[-1] if lines else type(chain[-1]).__name__)[:400]
