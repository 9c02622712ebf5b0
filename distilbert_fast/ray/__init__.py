"""Scale-out on Ray (optional extra: `pip install distilbert-fast[ray]`).

    from distilbert_fast.ray import run, Predictor, serve_app
    run("sentence-embeddings", model, "s3://bucket/corpus/", "s3://bucket/out/", actors=8)   # Ray Data job
    ds.map_batches(Predictor, fn_constructor_kwargs={"task": ..., "model": ...}, concurrency=4,
                   batch_format="pyarrow")                                              # in your pipeline
    serve.run(serve_app(model, num_replicas=2))                                         # Ray Serve

Modules: io (input discovery, the row-numbering datasource, the result writer), predictor (the actor class),
job (run, the resource plan), serving (the Ray Serve deployment around distilbert_fast.serve).
Inside this package `import ray` is the real Ray (absolute imports), never this package.
"""

from __future__ import annotations

__all__ = ["run", "Summary", "Predictor", "JobError", "plan_resources", "serve_app", "Deployment"]

_HOMES = {
    "run": "job",
    "Summary": "job",
    "plan_resources": "job",
    "Predictor": "predictor",
    "JobError": "io",
    "serve_app": "serving",
    "Deployment": "serving",
}


def __getattr__(name):
    # Lazy, so that `import distilbert_fast.ray` stays cheap and says which extra is missing only when used.
    if name in _HOMES:
        from importlib import import_module

        try:
            module = import_module(f"{__name__}.{_HOMES[name]}")
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] == "ray":
                raise ImportError("distilbert_fast.ray needs Ray: pip install 'distilbert-fast[ray]'") from e
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'distilbert_fast.ray' has no attribute {name!r}")
