"""QA batch scoring of recorded calls: ``nuqi score`` and ``POST /v1/batch``.

* :mod:`pipelines.batch.metrics` - conversation metrics (talk ratio, silence, overtalk, speech rate)
  from a call's per-chunk timeline;
* :mod:`pipelines.batch.records` - the shared records: a job, the options, a scored call (one
  ``summary.csv`` row), a worker's output, the batch's progress;
* :mod:`pipelines.batch.scorer` - one call → one scored call + timeline JSON + HTML page;
* :mod:`pipelines.batch.score` - the batch runner (resume, ``--force``, process pool, progress with ETA);
* :mod:`pipelines.batch.report` - per-call HTML pages, ``index.html`` and ``summary.csv``;
* :mod:`pipelines.batch.ray_runner` - the same work as Ray actor tasks (Ray is imported only for ``--ray``);
* :mod:`pipelines.batch.cli` - the ``nuqi score`` sub-command.
"""
