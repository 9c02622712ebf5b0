"""`distilbert-fast` / `python -m distilbert_fast`: run pipelines over files, benchmark, inspect, convert.

    distilbert-fast run TASK --model DIR --input FILE.{txt,jsonl} --output OUT.jsonl [--batch-size N]
                    [--dtype float32|bfloat16] [--backend auto|cpp|torch] [--top-k K] [--chunk-size N]
    distilbert-fast bench --model DIR [--input FILE] [--batch-size N] [--runs N]
    distilbert-fast info
    distilbert-fast convert SRC DST [--dtype D] [--class NAME]
    distilbert-fast serve --model DIR [--task T] [--host 127.0.0.1] [--port 8080] [--dtype D] [--backend B]
                    (HTTP server with dynamic batching; `distilbert-fast serve --help`, README "Serving")

`run` writes one JSON line per input row, {"index": i, "result": ...}, in input order. It streams the input
in chunks and flushes + fsyncs the output after each chunk, so an interrupted run loses at most the chunk in
flight; running the same command again resumes it (a line cut short by a kill is dropped and rewritten),
never duplicating or losing a row. The job's identity (input bytes, task, model, options) and a CRC per
written row are kept in OUT.jsonl.job: a resume of a different job is refused, the whole existing output is
verified first, and a lock (OUT.jsonl.lock) makes a second concurrent run on the same output fail at once
(distilbert_fast/jobs.py).

Every error (missing or malformed input, bad model path, bad arguments) is one line on stderr,
`distilbert-fast: error: ...`, and a non-zero exit status; set DISTILBERT_FAST_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROG = "distilbert-fast"
TASK_NAMES = (
    "text-classification",
    "sentiment-analysis",
    "fill-mask",
    "question-answering",
    "token-classification",
    "ner",
    "feature-extraction",
    "sentence-embeddings",
)
DTYPES = ("float32", "bfloat16")
BACKENDS = ("auto", "cpp", "triton", "torch")  # = distilbert_fast.ops.BACKENDS
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
SENTENCE_TRANSFORMERS_FILES = (
    "sentence_bert_config.json",
    "modules.json",
    "config_sentence_transformers.json",
)
DEFAULT_CHUNK_SIZE = 512


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise CLIError(f"{message} (see `{self.prog} --help`)", code=2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_quantize_argument(p: argparse.ArgumentParser) -> None:
    """`--quantize int8`, one spelling on every command that loads a model."""
    p.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="int8 GEMMs with dynamic per-token activation quantization (README: int8)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="DistilBERT inference with fused kernels (distilbert_fast).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser(
        "run",
        help="run a pipeline over a .txt / .jsonl file into JSON lines (resumable)",
        description="Run a task pipeline over every row of the input file.",
    )
    run.add_argument("task", choices=TASK_NAMES, metavar="TASK", help=f"one of: {', '.join(TASK_NAMES)}")
    run.add_argument(
        "--model", required=True, help="checkpoint directory (DistilBERT or BERT) or HF cache repo id"
    )
    run.add_argument(
        "--input",
        required=True,
        help='.txt (one text per line) or .jsonl (field "text"; "question" and "context" for QA)',
    )
    run.add_argument("--output", required=True, help=".jsonl output; an existing one is resumed")
    run.add_argument("--batch-size", type=_positive_int, default=32)
    run.add_argument("--dtype", choices=DTYPES, default=None)
    run.add_argument("--backend", choices=BACKENDS, default=None)
    add_quantize_argument(run)
    run.add_argument(
        "--top-k", type=_positive_int, default=None, help="text-classification, fill-mask, question-answering"
    )
    run.add_argument(
        "--aggregation-strategy",
        default=None,
        choices=("none", "simple", "first", "average", "max"),
        help="token-classification",
    )
    run.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"rows per written (fsynced) chunk (default {DEFAULT_CHUNK_SIZE})",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .ray.command import add_ray_arguments  # --ray, --address, --actors, --threads-per-actor, ...

    add_ray_arguments(run, _positive_int)

    bench = sub.add_parser("bench", help="tokens/s of distilbert_fast vs transformers on the same checkpoint")
    bench.add_argument("--model", required=True)
    bench.add_argument("--input", default=None, help=".txt or .jsonl texts (default: bundled sentences)")
    bench.add_argument("--batch-size", type=_positive_int, default=32)
    bench.add_argument("--runs", type=_positive_int, default=5, help="timed runs (median reported)")
    bench.add_argument("--dtype", choices=DTYPES, default=None)
    bench.add_argument("--backend", choices=BACKENDS, default=None)
    add_quantize_argument(bench)

    sub.add_parser("info", help="versions, backends, CPU features, threads")

    from .serve.command import add_serve_arguments

    add_serve_arguments(
        sub.add_parser(
            "serve",
            help="HTTP inference server with dynamic batching (needs the `serve` extra)",
            description="TEI-compatible routes (/embed, /predict, /rerank, /tokenize, /v1/embeddings, ...) with "
            "dynamic, padding-free batching; binds 127.0.0.1 unless --host says otherwise.",
        )
    )

    conv = sub.add_parser("convert", help="save a BERT or DistilBERT checkpoint as DistilBERT safetensors")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--dtype", choices=DTYPES, default=None)
    add_quantize_argument(conv)  # writes an int8 checkpoint (int8 weights + scales, quantization_config)
    conv.add_argument(
        "--class",
        dest="class_name",
        default=None,
        metavar="NAME",
        help="model class to save (default: from the config's architectures)",
    )
    return parser


# ----------------------------------------------------------------------------------------------------------
# input files
# ----------------------------------------------------------------------------------------------------------
class InputFile:
    """Rows of a .txt (one text per non-blank line) or .jsonl (one JSON object per non-blank line) file.

    The constructor validates the whole file (so a malformed line fails before any work) and counts rows;
    `rows(start)` streams them again from row `start`.
    """

    def __init__(self, path: str, task: str):
        self.path = Path(path)
        self.task = task
        if not self.path.exists():
            raise CLIError(f"input file not found: {path}")
        if not self.path.is_file():
            raise CLIError(f"input is not a file: {path}")
        self.kind = self.path.suffix.lower()
        if self.kind not in (".txt", ".jsonl"):
            raise CLIError(f"input file must be .txt or .jsonl, got {path}")
        if task == "question-answering" and self.kind == ".txt":
            raise CLIError('question-answering needs a .jsonl input with "question" and "context" fields')
        self.count = sum(1 for _ in self._iter())
        if self.count == 0:
            raise CLIError(f"input file has no rows: {path}")

    def _iter(self) -> Iterator[Any]:
        try:
            with open(self.path, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise CLIError(f"{self.path}:{lineno}: not valid UTF-8") from None
                    line = line.rstrip("\r\n")
                    if not line.strip():
                        continue
                    yield self._parse(line, lineno)
        except OSError as e:
            raise CLIError(f"cannot read input file {self.path}: {e.strerror or e}") from None

    def _parse(self, line: str, lineno: int) -> Any:
        from .rows import RowError, parse_line  # the row rules, shared with the Ray job (ray.py)

        try:
            return parse_line(line, self.kind, self.task)
        except RowError as e:
            raise CLIError(f"{self.path}:{lineno}: {e}") from None

    def rows(self, start: int = 0) -> Iterator[tuple[int, Any]]:
        for i, row in enumerate(self._iter()):
            if i >= start:
                yield i, row


def _jsonable(x: Any) -> Any:
    from .rows import jsonable  # shared with the Ray job (ray.py)

    return jsonable(x)


# ----------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------
def _check_model_arg(model: str) -> None:
    looks_local = (
        model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model
    )
    if looks_local and not os.path.exists(os.path.expanduser(model)):
        raise CLIError(f"model directory not found: {model}")
    if os.path.isfile(model):
        raise CLIError(f"--model must be a checkpoint directory, got the file {model}")


def cmd_run(args) -> int:
    from .pipelines import resolve_task

    if getattr(args, "ray", False):  # the same job on Ray Data (distilbert_fast/ray/command.py)
        from .ray.command import run_ray

        return run_ray(args, CLIError)

    task = resolve_task(args.task)
    _check_model_arg(args.model)
    source = InputFile(args.input, task)
    out = Path(args.output)
    if out.suffix.lower() != ".jsonl":
        raise CLIError(f"--output must be a .jsonl file, got {args.output}")
    if out.resolve() == source.path.resolve():
        raise CLIError("--output must differ from --input")
    call: dict[str, Any] = {}
    if args.top_k is not None:
        if task not in ("text-classification", "fill-mask", "question-answering"):
            raise CLIError(f"--top-k does not apply to {task}")
        call["top_k"] = args.top_k
    if args.aggregation_strategy is not None:
        if task != "token-classification":
            raise CLIError(f"--aggregation-strategy does not apply to {task}")
        call["aggregation_strategy"] = args.aggregation_strategy

    from .jobs import Job, JobError, input_identity, model_identity

    # What this job is: a resume must be the same job (jobs.py), whatever else is on disk.
    identity = {
        "input": input_identity(source.path),
        "rows": source.count,
        "task": task,
        "model": model_identity(args.model),
        "options": {
            "dtype": args.dtype,
            "backend": args.backend,
            **call,
            **({"quantize": args.quantize} if args.quantize else {}),
        },
    }
    job = Job(out, identity)
    try:
        job.open()  # exclusive lock, identity check, whole-output verification, torn-tail repair
    except JobError as e:
        raise CLIError(str(e)) from None
    with contextlib.closing(job):
        for note in job.notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        done = job.done
        if done == source.count:
            print(f"{PROG}: {out} is complete ({done} rows); nothing to do", file=sys.stderr)
            return 0
        if done:
            print(
                f"{PROG}: resuming after row {done - 1} ({done}/{source.count} rows already written and "
                "verified)",
                file=sys.stderr,
            )

        from tqdm.auto import tqdm

        from .pipelines import PipelineInputError, pipeline

        pipe = pipeline(
            task,
            model=args.model,
            dtype=args.dtype,
            backend=args.backend,
            batch_size=args.batch_size,
            progress=False,
            quantize=args.quantize,
        )
        bar = tqdm(
            total=source.count,
            initial=done,
            desc=task,
            unit="row",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=args.no_progress,
        )
        try:
            rows = source.rows(done)
            while True:
                chunk = [r for _, r in zip(range(args.chunk_size), rows)]
                if not chunk:
                    break
                try:
                    results = pipe.run([row for _, row in chunk], **call)
                except PipelineInputError as e:
                    raise CLIError(f"{source.path}: row {chunk[e.input_index][0]}: {e.reason}") from None
                if task == "sentence-embeddings":
                    results = list(results)
                job.write(
                    chunk[0][0],
                    [
                        json.dumps({"index": i, "result": _jsonable(r)}, ensure_ascii=False).encode("utf-8")
                        for (i, _), r in zip(chunk, results)
                    ],
                )
                bar.update(len(chunk))
        except KeyboardInterrupt:
            raise CLIError(
                f"interrupted: {job.done}/{source.count} rows are in {out}; run the same command "
                "again to resume",
                code=130,
            ) from None
        finally:
            bar.close()
        written = job.done
    print(f"{PROG}: wrote {written - done} rows to {out} ({written}/{source.count})", file=sys.stderr)
    return 0


def _bench_texts(path: str | None) -> list[str]:
    if path is None:
        from importlib import resources

        data = resources.files("distilbert_fast").joinpath("data", "sentences.txt")
        text = data.read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]
    rows = InputFile(path, "feature-extraction")
    return [r for _, r in rows.rows()]


def median_seconds(fn, runs: int = 7) -> float:
    """Median wall time of fn() over `runs` calls, after one warm-up call."""
    fn()  # warm-up (lazy init, prepacked weights, allocator)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cmd_bench(args) -> int:
    _check_model_arg(args.model)
    texts = _bench_texts(args.input)
    import torch

    from . import DistilBertTokenizer
    from .checkpoint import read_config_dict, resolve_model_dir
    from .modeling import MODEL_CLASSES, DistilBertModel

    model_dir = resolve_model_dir(args.model)
    arch = (read_config_dict(model_dir).get("architectures") or ["DistilBertModel"])[0]
    ours_cls = MODEL_CLASSES.get(arch) or MODEL_CLASSES.get("Distil" + arch) or DistilBertModel
    dtype = getattr(torch, args.dtype) if args.dtype else None
    tok = DistilBertTokenizer.from_pretrained(model_dir)
    ours = ours_cls.from_pretrained(model_dir, dtype=dtype, backend=args.backend, quantize=args.quantize)
    max_len = min(tok.model_max_length, ours.config.max_position_embeddings)
    order = sorted(texts, key=len, reverse=True)
    batches = [
        tok(
            order[i : i + args.batch_size],
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="pt",
        )
        for i in range(0, len(order), args.batch_size)
    ]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    def run(model):
        def go():
            with torch.inference_mode():
                for b in batches:
                    model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])

        return go

    rows = [
        (
            "distilbert_fast",
            ours.backend,
            str(ours.dtype).removeprefix("torch.") + ("+int8" if args.quantize else ""),
            median_seconds(run(ours), args.runs),
        )
    ]
    note = ""
    try:
        import transformers
    except ImportError:
        transformers = None
        note = "transformers is not installed: no comparison"
    diff = None
    if transformers is not None:
        transformers.utils.logging.disable_progress_bar()
        hf_cls = getattr(transformers, arch, None) or transformers.AutoModel
        hf = hf_cls.from_pretrained(model_dir, dtype=dtype or torch.float32).eval()
        impl = getattr(hf.config, "_attn_implementation", None) or "default"
        rows.append(
            (
                f"transformers {transformers.__version__}",
                f"{hf_cls.__name__}/{impl}",
                str(hf.dtype).removeprefix("torch."),
                median_seconds(run(hf), args.runs),
            )
        )
        with torch.inference_mode():
            b = batches[0]
            a = ours(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0].float()
            r = hf(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0].float()
            if a.shape == r.shape:
                m = b["attention_mask"].bool()
                diff = (a[m] - r[m]).abs().max().item() if a.dim() == 3 else (a - r).abs().max().item()

    print(
        f"{len(texts)} texts, {n_tokens} real tokens, batch size {args.batch_size}, "
        f"{torch.get_num_threads()} threads, median of {args.runs} runs"
    )
    print(f"{'engine':<24} {'backend':<28} {'dtype':<9} {'ms/pass':>9} {'tokens/s':>12}")
    for name, backend, dt, sec in rows:
        print(f"{name:<24} {backend:<28} {dt:<9} {sec * 1e3:>9.1f} {n_tokens / sec:>12,.0f}")
    if len(rows) == 2:
        extra = "" if diff is None else f" (first batch, max |diff| of the outputs: {diff:.2e})"
        print(f"speedup: {rows[1][3] / rows[0][3]:.2f}x{extra}")
    if note:
        print(note)
    return 0


def cpu_features() -> dict[str, bool]:
    from .ops.build import cpu_flags

    flags = cpu_flags()
    return {
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }


def cmd_info(args) -> int:
    import torch

    from . import __version__, available_backends

    try:
        import transformers

        hf_version = transformers.__version__
    except ImportError:
        hf_version = "not installed"
    try:
        from importlib.metadata import version

        tok_version = version("tokenizers")
    except Exception:
        tok_version = "not installed"
    features = cpu_features()
    print(f"distilbert_fast: {__version__}")
    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"torch: {torch.__version__}")
    print(f"transformers: {hf_version}")
    print(f"tokenizers: {tok_version}")
    print(f"backends: {', '.join(available_backends())}")
    from .ops import build, cpp

    if cpp.AVAILABLE:
        b = cpp.BUILD_INFO
        print(f"cpp extension: loaded ({b['origin']}) {b['path']}")
        print(
            f"cpp build: torch {b['torch']}, -march={b['march']}, simd: {b['simd']}, sources {b['sources']}"
        )
        from .ops.int8 import cpp as int8_cpp

        try:  # what quantize="int8" models pack their weights for
            kind = int8_cpp.gemm_kind()
        except (ValueError, RuntimeError) as e:
            kind = f"error: {e}"
        print(f"int8 GEMM: {kind} ({int8_cpp.GEMM_ENV}={os.environ.get(int8_cpp.GEMM_ENV, 'auto')})")
    else:
        print(f"cpp extension: unavailable: {cpp.IMPORT_ERROR}")
    print(f"cpp cache: {build.cache_root()} (DISTILBERT_FAST_CACHE_DIR)")
    requested = os.environ.get("DISTILBERT_FAST_BACKEND", "auto")
    print(f"default backend: {requested} -> {available_backends()[0] if requested == 'auto' else requested}")
    print("cpu features: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in features.items()))
    print(f"cpu: {platform.machine()}, {os.cpu_count()} logical cores")
    print(f"threads: torch {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")
    return 0


def cmd_convert(args) -> int:
    src, dst = Path(args.src), Path(args.dst)
    _check_model_arg(args.src)
    if dst.exists() and not dst.is_dir():
        raise CLIError(f"destination is a file: {dst}")
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise CLIError("destination must differ from the source")
    import torch

    from .checkpoint import read_config_dict, resolve_model_dir
    from .modeling import MODEL_CLASSES

    model_dir = resolve_model_dir(args.src)
    if args.class_name is not None:
        if args.class_name not in MODEL_CLASSES:
            raise CLIError(f"--class must be one of {', '.join(MODEL_CLASSES)}, got {args.class_name!r}")
        name = args.class_name
    else:
        arch = (read_config_dict(model_dir).get("architectures") or ["DistilBertModel"])[0]
        name = (
            arch
            if arch in MODEL_CLASSES
            else "Distil" + arch
            if "Distil" + arch in MODEL_CLASSES
            else "DistilBertModel"
        )
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model = MODEL_CLASSES[name].from_pretrained(
        model_dir, dtype=dtype, backend="torch", quantize=args.quantize
    )
    model.save_pretrained(dst)
    copied = []
    if any((model_dir / f).exists() for f in TOKENIZER_FILES):
        try:
            from . import DistilBertTokenizer

            DistilBertTokenizer.from_pretrained(model_dir).save_pretrained(dst)
            copied.append("tokenizer")
        except (OSError, ValueError, TypeError) as e:
            print(f"{PROG}: note: tokenizer not re-saved ({e}); copying its files", file=sys.stderr)
            for f in TOKENIZER_FILES:
                if (model_dir / f).exists():
                    shutil.copy2(model_dir / f, dst / f)
            copied.append("tokenizer files")
    for f in SENTENCE_TRANSFORMERS_FILES:
        if (model_dir / f).is_file():
            shutil.copy2(model_dir / f, dst / f)
            copied.append(f)
    if (model_dir / "modules.json").is_file():  # sentence-transformers module folders (e.g. 1_Pooling)
        try:
            modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
            folders = [m.get("path") for m in modules if isinstance(m, dict)]
        except (ValueError, OSError, TypeError):
            folders = []
        for folder in folders:
            safe = (
                isinstance(folder, str)
                and folder
                and not Path(folder).is_absolute()
                and ".." not in Path(folder).parts
            )
            if safe and (model_dir / folder).is_dir():
                shutil.copytree(model_dir / folder, dst / folder, dirs_exist_ok=True)
                copied.append(folder)
    extra = f" with {', '.join(copied)}" if copied else ""
    print(
        f"{PROG}: saved {name} ({model.num_parameters() / 1e6:.1f}M parameters, "
        f"{str(model.dtype).removeprefix('torch.')}{', int8 GEMMs' if args.quantize else ''}) to {dst}{extra}",
        file=sys.stderr,
    )
    return 0


def cmd_serve(args) -> int:
    from .serve.command import run_serve

    return run_serve(args)


COMMANDS = {"run": cmd_run, "bench": cmd_bench, "info": cmd_info, "convert": cmd_convert, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("DISTILBERT_FAST_DEBUG", "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except CLIError as e:
        if debug:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        kind = "" if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: "
        print(f"{PROG}: error: {kind}{message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
