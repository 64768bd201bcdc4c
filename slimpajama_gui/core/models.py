"""Discover and open models safely: folders, the packaged MiniLM, the local HF cache.

CONTRACT (filled in by the implementation; the GUI codes against these names):

    @dataclass(frozen=True)
    class ModelInfo:
        name: str                 # folder name, or repo id for HF cache entries
        family: str               # config model_type, e.g. "bert", "roberta", "slimpajama"
        path: Path                # the folder holding config.json
        source: str               # "packaged" | "folder" | "hf-cache" | "result"
        parameters: int           # from safetensors headers (floating tensors only)
        size_bytes: int           # bytes on disk of the weight files (+ tokenizer/config)
        layers: int
        hidden: int
        heads: int                # heads of layer 0 (or max); per-layer in layer_heads
        vocab: int
        layer_heads: tuple[int, ...]
        layer_ffn: tuple[int, ...]
        layer_params: tuple[int, ...]   # parameters of each encoder layer
        embedding_params: int
        other_params: int          # pooler, classifier, ...
        num_labels: int | None
        dtype: str                 # e.g. "F32"

    def packaged_minilm_path() -> Path
    def inspect_model(path: Path, source: str = "folder") -> ModelInfo   # raises UserError
    def scan_hf_cache(cache_dir: Path | None = None) -> list[ModelInfo]  # never downloads
    def discover_models(extra: Iterable[Path] = ()) -> tuple[list[ModelInfo], list[str]]
        # (models found, one sentence per folder that was skipped and why)
    def open_model(path) -> ModelHandle  # .info, .load_model(num_labels=None), .load_tokenizer()
"""
