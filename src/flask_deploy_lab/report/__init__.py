"""The report: compare the cells of one load-test run against their ceilings.

    fdl-report reports/<run-id>
    python -m flask_deploy_lab.report reports/<run-id>

writes ``index.html``, ``summary.csv`` and ``summary.json`` into that directory
and exits non-zero, saying why, when the directory holds no cells or a cell
breaks the layout below.

Input layout (written by the load-test playbook)
================================================

::

    reports/<run-id>/
      environment.json
      <cell-id>/                      one per measured cell, e.g. uwsgi--slow--u100,
                                      or uwsgi--slow--d1--u400 (a step of a ladder)
        cell.json
        locust_stats.csv              Locust --csv=<cell-id>/locust --csv-full-history
        locust_stats_history.csv
        locust_requests.csv           every request of the run, and those in flight
                                      at the stop, written by the locustfile
                                      (layout and figures: report.locust)
        locust_latency.hlog           every completed request's response time, in an
                                      HdrHistogram per second of completion, written
                                      by the locustfile (figures: report.hdr)
        locust_failures.csv
        locust_exceptions.csv
        locust_report.html            Locust --html (linked from the page)
        locust.log                    the master's log (Locust --logfile): read for
                                      Locust's CPU warning only (report.locust)
        samples/<host>.csv            the sampler role, one file per host
        hey.csv, hey.json             I/O-bound cells only: the second client, hey
                                      (layout and figures: report.hey)
        proxy/<host>.log.gz           the proxy's access log over the cell: the
                                      req/s of each app host, and nginx's and the
                                      upstream's latencies (report.proxy)
        tasks.csv                     tasks cells only: the tasks created in the
                                      run, from the database (report.tasks)
        inprocess.json                CPU-bound cells only: what a request cost the
                                      app called in-process on each app host
                                      (labapp.cost; read by flask_deploy_lab.cell
                                      into cell.json, not by the report)

The sampler role runs ``sampler.py`` on every host from just before the measured run to a few
seconds after it (``--duration`` = duration_s + slack, ``--interval 1``): on app
hosts with ``--unit <the app's unit>``, on db hosts with ``--pg-psql-user
postgres``, on load generators with ``--proc-name locust``. Name each file
after the inventory host, as cell.json's host lists do.

``cell.json`` and ``environment.json`` are written by flask_deploy_lab.cell from
the facts the playbook gathers (``<cell>/facts.json``).

``environment.json`` (every key optional; shown at the top of the page)::

    {"run_id": "20260101-120000", "started": "<ISO 8601>", "finished": "<ISO 8601>",
     "git_commit": "abc1234", "git_dirty": false, "substrate": "lab",
     "versions": {"locust": "2.47.0", "postgresql": "15.10", ...},  # name -> version
     "limits": {"unit_cpu_quota": "20%", "unit_memory_max": "200M",
                "unit_limits_enforced": false, "cgroup_version": 1},
     "hosts": [{"name": "app1", "groups": ["app"], "node_cpus": 1, "node_memory_mb": 512}]}

``cell.json``::

    server          str, required   the `server` switch value, e.g. "gunicorn-gthread"
    endpoint        str, required   an endpoint of catalogue.yml, e.g. "slow"
    users           int, required   concurrent Locust users (closed loop, wait 0)
    spawn_rate      number|null     users started per second (null: a web UI run)
    duration_s      number          length of the measured run
    warmup_s        number          length of the separate, unrecorded warm-up run
    delay_s         number | null   ?delay= of /slow and /sleep; null for other endpoints
    queries         int | null      ?n= of /queries
    server_slots    int | null      requests all app hosts can hold at once:
                                    workers * threads, workers * greenlets, 1 for flask;
                                    null for a server with no bound (per_process:
                                    unbounded in catalogue.yml)
    pool_size       int | null      connections the app's pools can hold in total
                                    (db_pool_max * pools); null in naive mode
    db_mode         "naive" | "pool"
    app_cpus        number | null   CPUs the app may use, summed over app hosts:
                                    min(node_cpus, CPUQuota if unit limits are enforced)
    inprocess_cpu_s_per_request
                    number | null   CPU-seconds a request costs the app alone: its
                                    WSGI callable called in-process on the app hosts
                                    (no server, no socket), just before the measured
                                    run; the hosts as one, app_cpus / sum(cpus_h /
                                    cost_h). null: not measured (delay-bound endpoints,
                                    loadtest_inprocess=false, older runs)
    app_hosts       [str]           hosts whose samples carry the app unit's cgroup
    db_hosts        [str]           hosts whose samples carry pg_stat_activity counts
    loadgen_hosts   [str]           hosts running Locust
    workers         int             Locust worker processes
    workers_lost    [str]           workers the master lost before the run time was
                                    up; Locust then restarted its statistics, so the
                                    CSVs cover only the rest of the run
    config          str, optional   label for the configuration; default: the server,
                                    plus [db_mode] when the run has that server in both modes

The measured run is the one Locust writes the CSVs for. Warm-up is a separate
short run before it whose output is discarded. The stats history fixes the
measured window, from the first second with all users running to its last
row; only sampler rows inside it count. A host with fewer than two rows inside
(or a cell without a stats history) gives no figure at all, and the note says
"fewer than two samples in the window from <role> host <host>": rows from
outside the run never stand in for it (an app host's CPU is then None, and so
is a load generator's when no load generator has two).

Throughput, mean and percentiles come from ``locust_requests.csv``, every
request of the run (its start, its response time, whether it failed), over a
steady window: from one allowance (the mean response time, at least 1 s)
after all users were running to one allowance before the last completion.
The rate is each request's share of its own time inside the window, over the
window's length (a closed loop that starts its users at once completes
nothing for one latency, and a fixed delay keeps requests in step, so
counting completions or dividing by the whole run would be off by a burst or
by the start-up transient); the percentiles are exact (nearest rank) over the
requests completing in the window. Without that file (a run before it
existed, or one whose log went over the locustfile's cap) ``rps`` is the
increase of the history's cumulative ``Total Request Count`` past the
transient, the mean Locust's, and the percentiles and the max come from
``locust_latency.hlog``, the HDR histograms of every request (3 significant
digits), over their own window (report.hdr); without either file they are
Locust's own, rounded to its buckets. The note says which.
``locust_rps_reported`` and the ``locust_*_ms`` columns are always Locust's
own.

The HDR histograms' figures (``hdr_requests``, ``hdr_p50_ms`` ...
``hdr_max_ms``) stand beside the headline whenever the cell has the file:
over the request log's window when it has one, from the seconds that lie
whole inside it. When their p99 lies further from the exact p99 than the
histogram's precision (0.1 %) and the requests of the cut seconds allow, the
note says so; the cell stays valid (report.hdr).

Numbers per cell
================

- app CPU: cores the app unit used, from the unit's CPU counter on the app
  hosts (summed): its cgroup's, or where a container cannot see that, the
  CPU time of the unit's processes (see sampler.py); without either, the app
  hosts' whole CPU (``app_cpu_source`` says ``unit`` or ``host``).
- ceiling: for the delay-bound endpoints (those with a ``delay_param`` in
  catalogue.yml: ``slow`` and ``sleep``) Little's law, ``min(users,
  server_slots, pool_size if db_mode is pool and the endpoint holds a
  connection (``holds_db_connection``)) / delay_s`` -- on a server with no
  bound (``server_slots`` null, ``per_process: unbounded`` in catalogue.yml),
  ``min(users, pool if it applies) / delay_s``; for every other endpoint
  ``app_cpus / inprocess_cpu_s_per_request``: the CPU a request costs the app
  alone, measured in-process on the app hosts with no server, so the same for
  every server. Without the inputs (no in-process figure, no delay, no
  app_cpus) it is null and the page says n/a -- never an estimate.
- efficiency: ``rps`` / ceiling. (Never with the server's own CPU per request
  in the ceiling: ``rps / (app_cpus / (cores / rps))`` is ``cores /
  app_cpus``, the CPU utilisation, higher for a server that burns more.)
- CPU per request: ``cpu_s_per_request`` = unit CPU cores / ``rps``, the
  server's own (the app and the server under test together; null without the
  unit's CPU counter); ``inprocess_cpu_s_per_request`` from cell.json; and
  ``server_overhead_us`` = ``(cpu_s_per_request -
  inprocess_cpu_s_per_request) x 1e6``, what the server itself costs a
  request in CPU-microseconds (null when either is; below 0 only within their
  noise).
- ideal latency (delay-bound endpoints): the closed loop's latency on a perfect
  server, ``delay_s * max(1, users / min(server_slots, pool if it applies))``;
  ``delay_s`` on a server with no bound.
- identity ratio: ``(users / rps) / mean latency``. Closed-loop users with no
  wait are always in a request, so it is 1.0 when rate and latency see all of
  their time; hey's is ``(connections / hey_rps) / hey mean latency``.
- hey (I/O-bound cells): requests completed in hey's measured window, non-2xx
  among them, rate, mean and exact percentiles (see report.hey).
  ``clients_agree``: ``|rps - hey_rps| / hey_rps <= 0.05``; null without hey.
- the proxy (cells with proxy/<host>.log.gz, see report.proxy): the requests
  each app host answered per second (``app_hosts_rps``), and where a
  request's time goes: ``proxy_p50_ms``, ``proxy_p99_ms`` (nginx's
  ``$request_time``) and ``upstream_p50_ms``, ``upstream_p99_ms`` (the
  ``$upstream_response_time`` of the try that answered), exact over the
  ``proxy_requests`` lines whose second lies whole inside the window,
  ``/healthz`` left out. The clients' p99 less nginx's is the client and the
  network; nginx's less the upstream's is nginx. Null without the log. The
  app's own split of the upstream's time, from its Server-Timing answer
  (labapp.timing) in the same lines: ``app_queue_p50_ms``,
  ``app_queue_p99_ms`` (from nginx's send to the app's first look: the
  server's backlog, a wait for a free worker) and ``app_p50_ms``,
  ``app_p99_ms`` (the view's own time); null for an app or a log before it.
- throttling: increase of ``nr_throttled`` (and ``nr_periods``, throttled
  seconds) over the window, summed over app hosts.
- load generators, each figure the highest of any of them: the busiest
  1-second sample (``loadgen_cpu_peak_pct``) and the mean
  (``loadgen_cpu_mean_pct``) of CPU, in % of what the host may use, and the
  busiest Locust process's mean and busiest sample (``loadgen_process_cores``,
  ``loadgen_process_peak_cores``: one Locust process cannot use more than one
  core); ``locust_cpu_warning``:
  whether locust.log holds Locust's own CPU warning (None without the file).
  ``generator_saturated``: validity rule 1 below holds (None: no load
  generator sampled and no warning).
- the machine: ``machine_busy_cores`` of ``machine_cpus``, the CPUs the
  kernel's /proc/stat found busy (mean over the window) on the host busiest
  for its CPUs: in the lab's containers every host's is the one machine's,
  load generators, proxy, database and app hosts together; on VMs or real
  hosts each host's own. From 0.9 of its CPUs the note says the servers
  waited for CPUs they shared (a note, not a validity rule: every cell of a
  shared machine shares it). None for samples without the columns.
- requests in flight at the stop (from locust_requests.csv, see
  report.locust): ``unfinished_requests``, the oldest one's age
  (``unfinished_oldest_ms``) and how many had waited longer than the row's
  ``p99_ms`` (``cutoff_requests``); None with no request log, or an older
  one that does not list them (the note says so).

Validity
========

A cell whose figures do not measure the server is invalid: ``valid`` is
false and ``invalid_reasons`` lists one short reason for each rule that holds
(empty when valid). The rules (model.VALIDITY_RULES) read the row's own
rounded columns, so anyone can check them from summary.json; each rule's
limit itself is valid:

1. a saturated load generator: a sample of a load generator's CPU in the
   window above 90 % (``loadgen_cpu_peak_pct``: any second, not the mean), a
   sample of the busiest Locust process above 0.9 of a core
   (``loadgen_process_peak_cores``), or Locust's CPU warning in locust.log
   ("CPU usage above 90%!", "CPU usage was too high", and the master's
   "Worker ... exceeded cpu threshold" for a worker);
2. a Locust worker lost mid-run (``workers_lost``): Locust restarted its
   statistics then;
3. latency cut off by the end of the run: requests in flight when the run
   stopped had already waited longer than ``p99_ms``, more than 1 % of the
   requests measured (``cutoff_requests`` > 0.01 x ``requests``; one of the
   slowest 1 % may be in flight by chance): Locust counted none of them, so
   the percentiles understate the tail;
4. ``efficiency`` above 1.02: the ceiling is wrong;
5. no ceiling (``ceiling_rps`` None): nothing to measure the throughput
   against;
6. the closed-loop identity broken: ``identity_ratio``, or with hey
   ``hey_identity_ratio``, off 1.0 by more than 5 %
   (flask_deploy_lab.targets.IDENTITY_TOLERANCE).

The page marks each invalid cell with its reasons and strikes its figures
through (and hatches its bars, boxes its points in the figures): they are not
results. flask_deploy_lab.targets does not judge an invalid cell (its
verdicts miss with the reasons), and ``make bench`` prints every invalid cell
with why and exits 1.

Output
======

``summary.csv`` has one row per cell with the columns of ``summary.Row``
(empty = not measured; ``invalid_reasons`` joined by "; "); ``summary.json``
is ``{"run", "environment", "cells": [the same rows]}`` (``invalid_reasons``
a list); ``index.html`` shows them, with a figure per endpoint
and, when the run has ladders (cells of one endpoint and delay at more than
one number of users), a "Concurrency ladder" section: throughput and latency
against users per configuration, Locust's and hey's, with the ceiling and the
ideal latency. Whether the cells met the benchmark's targets is
flask_deploy_lab.targets' to say, from these rows.
Units (each column's is declared in summary.py): ``rps`` and ``ceiling_rps``
requests/s, ``*_ms`` milliseconds, ``*_cores`` CPUs, ``throttled_s`` seconds,
``*_pct`` percent of what the host may use, ``*_cpu_s_per_request``
CPU-seconds, ``server_overhead_us`` CPU-microseconds.

Modules
=======

::

    cli        main(argv): the command line, writes the three files
    model      a run directory -> summary rows: cells, ceilings, validity rules
    locust     Locust's CSVs (stats, history, failures), its log's CPU warning
               and its request log: the figures over the steady window, the
               requests in flight at the stop
    hdr        the latency histograms (locust_latency.hlog): their figures over a
               window, and whether their p99 agrees with the exact one
    hey        hey's CSV and JSON: its figures over its measured window
    proxy      the proxy's access log: requests per second of each app host,
               nginx's and the upstream's p50 and p99
    tasks      a tasks cell's tasks: time from POST to done, failed, unfinished
    exact      nearest-rank percentiles and a request's share of a window
    errors     ReportError: a run that breaks the layout
    samples    the sampler's CSVs, and counters over the measured window
    csvfile    CSV rows and their fields as numbers
    summary    the row schema (one declaration) and summary.csv / summary.json
    plots      matplotlib figures as inline SVG
    html       index.html from templates/report.html.j2 (Jinja2, autoescaped)
"""
