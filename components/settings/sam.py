"""The `sam` section: the Segment Anything ML backend and where it may run."""

from __future__ import annotations

import re
from typing import Any, Optional

from components.settings.active_hours import read_active_hours
from components.settings.checks import (
    check_label_key, check_label_value, image_reference_problem, is_quantity, quantity_value,
)
from components.settings.model import ImageSignatureSettings, Resources, SamModel, SamSettings, Toleration
from components.settings.reader import Problems, Section, read_resources, show
from reconciler.contract import SELF_TEST_FAIL, SELF_TEST_MODES

DEFAULT_SHM_SIZE = "2Gi"
DEFAULT_IMAGE_CACHE_SIZE = "10Gi"
_GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
# Where a digest comes from: the platform's image's workflow prints it for every build and
# proposes it to the stack files; an upstream image's registry answers for its tags.
DIGEST_SOURCE = ("the sam-image workflow prints the platform image's digest and proposes it, docs/sam-image.md; "
                 "for another image: docker buildx imagetools inspect <image>")
# The segment_anything_2_image example's defaults: SAM 2.1 Hiera Large, baked into its image.
DEFAULT_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"
DEFAULT_SAM2_CHECKPOINT = "sam2.1_hiera_large.pt"
# On CPU a second worker answers a click (and the probes) while the first computes an
# embedding; on a GPU each worker would hold its own copy of the model in GPU memory.
DEFAULT_CPU_WORKERS = 2
DEFAULT_GPU_WORKERS = 1
# The platform's server keeps image features (16 MiB an image, whatever the model size) in pod
# memory on a CPU and in GPU memory on a GPU: 64 and 128 images.
DEFAULT_CPU_EMBEDDING_CACHE_MIB = 1024
DEFAULT_GPU_EMBEDDING_CACHE_MIB = 2048
# What the server needs beside its cache on a CPU: the model, torch, a download being decoded.
CPU_MEMORY_BESIDE_CACHE_MIB = 1536
# The larger SAM 2.1 models take many seconds an image on a CPU.
GPU_SIZED_MODELS = ("sam2.1-base-plus", "sam2.1-large")
# A ViT-H image is several GB: pulling it onto a fresh GPU node can take minutes, on top of
# loading the model. The rollout budget (and the lead before an active-hours window) covers both.
IMAGE_PULL_ALLOWANCE_SECONDS = 600
# What a GPU node pool's taint usually is (the NVIDIA GPU operator's and EKS's convention).
DEFAULT_GPU_TOLERATION = Toleration("nvidia.com/gpu", "Exists", None, "NoSchedule")


def _toleration(path: str, raw: Any, problems: Problems) -> Optional[Toleration]:
    item = Section(path, raw, problems)
    key = item.string("key", "Taint key.", required=True, check=check_label_key, kind="label key")
    operator = item.choice("operator", "How the value matches.", ("Exists", "Equal"), "Equal")
    value = item.string("value", "Taint value (operator Equal).", check=check_label_value, kind="label value")
    effect = item.choice("effect", "Taint effect.", ("NoSchedule", "PreferNoSchedule", "NoExecute"), None)
    item.finish()
    if operator == "Exists" and value is not None:
        item.error("value", "is set with operator Exists; expected no value or operator Equal")
    return Toleration(key, operator, value, effect) if key else None


def _check_image(section: Section, image: Optional[str], production: bool, unpinned_reason: Optional[str]) -> None:
    if image is None:
        if not section.has("image"):
            section.error("image", "is required when sam.enabled is true; expected repository:tag@sha256:<digest>")
        return
    problem, moving = image_reference_problem(image)
    if problem:
        section.error("image", f"{show(image)} {problem}")
    elif moving and production and not unpinned_reason:
        section.error("image", f"{show(image)} has a tag without a digest, and a tag may move; expected "
                               f"repository:tag@sha256:<digest> in a protected stack ({DIGEST_SOURCE}), "
                               "or sam.unpinnedImageReason saying why not yet")
    elif moving and production:
        section.problems.warnings.append(f"{section.key('image')}: {image} has no digest in a protected stack, "
                                         f"accepted because: {unpinned_reason}")
    elif moving:
        section.problems.warnings.append(f"{section.key('image')}: {image} has no digest, so its tag may move; "
                                         f"pin one before production ({DIGEST_SOURCE})")


def check_github_repository(text: str) -> Optional[str]:
    if _GITHUB_REPOSITORY.match(text):
        return None
    return "is not a GitHub repository; expected owner/name, e.g. example-org/labeling-platform"


def _read_signature(section: Section, model: SamModel, image: Optional[str]) -> Optional[ImageSignatureSettings]:
    """None while switched off (the default); the repository waits, unread, with one warning."""
    enabled = section.boolean("enabled", "Admit the SAM pods only with an image the repository's "
                              ".github/workflows/sam-image.yml signed on main (keyless, GitHub's OIDC issuer): a "
                              "Kyverno ClusterPolicy the stack declares; the cluster runs Kyverno 1.13 or later.", False)
    repository = section.string("repository", "owner/name of the GitHub repository whose sam-image workflow built "
                                "and signed sam.image.", check=check_github_repository, kind="GitHub repository")
    section.finish()
    if not enabled:
        section.inapplicable(("repository",), "while sam.verifySignature.enabled is false")
        return None
    if repository is None and not section.has("repository"):
        section.error("repository", "is required when sam.verifySignature.enabled is true; expected owner/name of "
                                    "the repository whose sam-image workflow signs the image")
    if not model.platform_server:
        section.error("enabled", f"true admits only the image the sam-image workflow signed, but sam.model "
                                 f"{model.value} runs an upstream example's image; expected a sam2.1-* model or false")
    elif image and "@sha256:" not in image:
        section.error("enabled", f"true needs sam.image by digest, as a signature names one build, not "
                                 f"{show(image)}; expected repository:tag@sha256:<digest>")
    return ImageSignatureSettings(repository) if repository else None


def _check_image_cache(section: Section, size: Optional[str], resources: Resources) -> None:
    # The kubelet evicts a pod whose emptyDir outgrows its sizeLimit or whose ephemeral use
    # outgrows the limit: the cache must fit inside the limit with room for everything else.
    limit = resources.limits.get("ephemeral-storage")
    if size and limit and is_quantity(size) and is_quantity(limit) and quantity_value(size) >= quantity_value(limit):
        section.error("imageCacheSize", f"{show(size)} is not below resources.limits.ephemeral-storage {show(limit)}; "
                                        "expected a smaller cache or a larger limit")


def _check_embedding_cache(section: Section, cache_mib: Optional[int], resources: Resources, gpus: int) -> None:
    # On a CPU the cache lives in the pod's memory: past the limit the kernel kills the pod.
    limit = resources.limits.get("memory")
    if gpus or not limit or not is_quantity(limit):
        return
    wanted = (cache_mib or DEFAULT_CPU_EMBEDDING_CACHE_MIB) + CPU_MEMORY_BESIDE_CACHE_MIB
    if wanted * 1024 * 1024 > quantity_value(limit):
        key = "embeddingCacheMiB" if cache_mib else "resources.limits.memory"
        shown = cache_mib if cache_mib else show(limit)
        section.error(key, f"{shown} leaves no room: the embedding cache ({cache_mib or DEFAULT_CPU_EMBEDDING_CACHE_MIB} "
                           f"MiB) and {CPU_MEMORY_BESIDE_CACHE_MIB} MiB beside it exceed resources.limits.memory "
                           f"{show(limit)}; expected a smaller sam.embeddingCacheMiB or a larger limit")


def read_sam(section: Section, production: bool) -> SamSettings:
    enabled = section.boolean("enabled", "Deploy the SAM ML backend and connect it to SAM-assisted projects.", True)
    model = section.choice("model", "sam2.1-tiny, sam2.1-small (CPU or GPU), sam2.1-base-plus, sam2.1-large (GPU): "
                           "the platform's SAM server (sam.image an image built from sam-server/). MobileSAM "
                           "(CPU-friendly) or SAM (ViT-H, needs a GPU): the upstream segment_anything_model "
                           "example's SAM_CHOICE; SAM2: the upstream segment_anything_2_image example (GPU only).",
                           [m.value for m in SamModel], SamModel.SAM2_1_TINY.value)
    image = section.string("image", "SAM backend image, repository:tag@sha256:digest (a tag alone may move: a "
                           "warning, and an error in a protected stack); set it in every stack file. sam2.1-*: "
                           "the image the sam-image workflow builds from sam-server/.", kind="image reference")
    gpus = section.integer("gpus", "nvidia.com/gpu limit of the SAM pod (0: CPU).", 0, minimum=0, maximum=8)
    node_selector = section.string_map("nodeSelector", "Node labels the SAM pod must run on.", key_check=check_label_key,
                                       value_check=check_label_value)
    tolerations_raw = section.items("tolerations", "Taints the SAM pod tolerates (default for gpus > 0: nvidia.com/gpu Exists).",
                                    "list of {key, operator, value, effect}")
    resources = read_resources(
        section.section("resources", "Requests and limits of the SAM pod (GPUs come from sam.gpus)."),
        # ephemeral-storage: the image cache, /tmp, the model cache, logs and the writable layer.
        Resources({"cpu": "1", "memory": "4Gi", "ephemeral-storage": "1Gi"},
                  {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "12Gi"}),
        ("cpu", "memory", "ephemeral-storage"),
    )
    shm_size = section.quantity("shmSize", "Size of the in-memory /dev/shm volume.", DEFAULT_SHM_SIZE)
    startup = section.integer("startupTimeoutSeconds", "How long the model may take to load before the pod is restarted.",
                              600, minimum=60, maximum=3600)
    workers = section.integer("workers", "Upstream examples: gunicorn workers per pod, each with its own model "
                              "answering one click at a time (default 2 on CPU, 1 with a GPU).", None, minimum=1, maximum=8)
    replicas = section.integer("replicas", "SAM pods (inside sam.activeHours' windows). The platform's server routes "
                               "each image's clicks to one pod, so an image is embedded once for the team.",
                               1, minimum=1, maximum=16)
    cache_mib = section.integer("embeddingCacheMiB", "The platform's server: MiB of image features kept for every "
                                "labeler (16 MiB an image; default 1024 on CPU, in pod memory, 2048 on a GPU, in GPU "
                                "memory).", None, minimum=64, maximum=262144)
    image_cache_size = section.quantity("imageCacheSize", "Size of the emptyDir the backend caches task images in; "
                                        "below resources.limits.ephemeral-storage.", DEFAULT_IMAGE_CACHE_SIZE)
    self_test = section.choice("selfTest", "What a failed deploy-time SAM self-test does: fail the run or warn.",
                               SELF_TEST_MODES, SELF_TEST_FAIL)
    model_config = section.string("modelConfig", "SAM 2's MODEL_CONFIG (model SAM2 only).", DEFAULT_SAM2_CONFIG)
    model_checkpoint = section.string("modelCheckpoint", "SAM 2's MODEL_CHECKPOINT, a file under the image's "
                                      "checkpoints/ (model SAM2 only).", DEFAULT_SAM2_CHECKPOINT)
    unpinned_reason = section.string("unpinnedImageReason", "Why a protected stack runs sam.image on a tag "
                                     "without a digest; without it that is an error.")
    hours_section = section.section("activeHours", "The team's labeling windows: outside them SAM runs 0 replicas.")
    signature_section = section.section("verifySignature", "Admission of the SAM pods only with the image the "
                                        "platform's sam-image workflow signed (docs/sam-image.md).")
    if not enabled:
        hours_section = Section(hours_section.path, hours_section.raw, section.problems.recording_only())
        signature_section = Section(signature_section.path, signature_section.raw, section.problems.recording_only())
    active_hours = read_active_hours(hours_section, startup + IMAGE_PULL_ALLOWANCE_SECONDS)
    model = SamModel(model or SamModel.SAM2_1_TINY)
    image_signature = _read_signature(signature_section, model, image)
    section.finish()
    tolerations = tuple(
        t for i, raw in enumerate(tolerations_raw)
        if (t := _toleration(section.key(f"tolerations[{i}]"), raw, section.problems)) is not None
    )
    if not enabled:
        # Switching SAM off is one key: the rest of the section waits for it to come back.
        section.inapplicable(("model", "image", "gpus", "nodeSelector", "tolerations", "resources", "shmSize",
                              "startupTimeoutSeconds", "workers", "replicas", "embeddingCacheMiB", "imageCacheSize",
                              "selfTest", "modelConfig", "modelCheckpoint", "unpinnedImageReason", "activeHours",
                              "verifySignature"),
                             "while sam.enabled is false")
    else:
        _check_image(section, image, production, unpinned_reason)
        if model in (SamModel.SAM, SamModel.SAM2) and gpus == 0:
            section.error("model", f"\"{model.value}\" needs a GPU but sam.gpus is 0; expected MobileSAM or "
                                   "sam2.1-tiny on CPU, or gpus >= 1")
        if model is not SamModel.SAM2:
            section.inapplicable(("modelConfig", "modelCheckpoint"), "unless sam.model is SAM2")
        if model.platform_server:
            # One process per pod with one embedding lane; downloads are not kept.
            section.inapplicable(("workers", "imageCacheSize"), "with the platform's server (sam.model sam2.1-*)")
            _check_embedding_cache(section, cache_mib, resources, gpus)
            if model.value in GPU_SIZED_MODELS and gpus == 0:
                section.problems.warnings.append(
                    f"{section.key('model')}: {model.value} on a CPU takes many seconds an image; "
                    "sam2.1-tiny or sam2.1-small suit a CPU")
        else:
            _check_image_cache(section, image_cache_size, resources)
            section.inapplicable(("embeddingCacheMiB",), "unless sam.model is a sam2.1-* model (the platform's server)")
            if replicas > 1:
                section.problems.warnings.append(
                    f"{section.key('replicas')}: {replicas} replicas of the upstream {model.value} example each embed "
                    "an image again when a click reaches them; the platform's server (sam.model sam2.1-*) does not")
    if gpus > 0 and not tolerations_raw:
        tolerations = (DEFAULT_GPU_TOLERATION,)
    return SamSettings(enabled, model, image, gpus, node_selector, tolerations, resources,
                       shm_size or DEFAULT_SHM_SIZE, startup,
                       workers=1 if model.platform_server else (
                           workers or (DEFAULT_GPU_WORKERS if gpus > 0 else DEFAULT_CPU_WORKERS)),
                       replicas=replicas,
                       embedding_cache_mib=(cache_mib or (DEFAULT_GPU_EMBEDDING_CACHE_MIB if gpus > 0
                                                          else DEFAULT_CPU_EMBEDDING_CACHE_MIB))
                       if model.platform_server else None,
                       image_cache_size=image_cache_size or DEFAULT_IMAGE_CACHE_SIZE,
                       self_test=self_test or SELF_TEST_FAIL,
                       model_config=(model_config or DEFAULT_SAM2_CONFIG) if model is SamModel.SAM2 else None,
                       model_checkpoint=(model_checkpoint or DEFAULT_SAM2_CHECKPOINT) if model is SamModel.SAM2 else None,
                       active_hours=active_hours if enabled else None,
                       image_signature=image_signature if enabled else None)
