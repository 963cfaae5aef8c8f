"""`raybench submit | status | logs | stop`: run on a Ray cluster through its Jobs API.

Thin: options in, raybench.jobs.submit does the work. Imports nothing heavy at module
level (`raybench --help` lists these commands).
"""

from __future__ import annotations

import functools
import sys

import click

#: Exit code of `--wait` / `logs --follow` when the job ended other than SUCCEEDED.
JOB_FAILED_EXIT = 1


def dashboard_options(func):
    """--address, --header, --verify/--no-verify, --ca-bundle, --timeout -> a `dash` argument."""

    @click.option("--address", envvar="RAY_API_SERVER_ADDRESS", required=True, metavar="URL",
                  help="The cluster's dashboard, http://HEAD:8265 [env: RAY_API_SERVER_ADDRESS].")
    @click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
                  help="An HTTP header for a dashboard behind an auth proxy (repeatable); "
                       "NAME=@FILE reads the value from FILE. Values are never printed.")
    @click.option("--verify/--no-verify", default=True, show_default=True,
                  help="Verify the dashboard's TLS certificate.")
    @click.option("--ca-bundle", type=click.Path(exists=True), default=None,
                  help="A CA file (PEM) to verify the dashboard's certificate with, or a directory "
                       "of them prepared with `openssl rehash`.")
    @click.option("--timeout", type=float, default=30.0, show_default=True, metavar="SECONDS",
                  help="How long to wait for the dashboard to answer (connecting: at most 5 s).")
    @functools.wraps(func)
    def wrapper(address, headers, verify, ca_bundle, timeout, **kwargs):
        from raybench.jobs.dashboard import dashboard

        dash = dashboard(address, headers, verify=verify, ca_bundle=ca_bundle, timeout=timeout)
        if dash.verify is False and dash.address.startswith("https:"):
            _unverified_once(dash)
        return func(dash=dash, **kwargs)

    return wrapper


def _unverified_once(dash) -> None:
    """--no-verify was asked for: say so once, instead of urllib3's multi-line warning on the
    first request of each connection."""
    import warnings

    from raybench.console import notice

    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    notice(f"note: --no-verify: the certificate of {dash.shown} is not checked")


@click.command()
@click.option("--matrix", default=None, metavar="NAME|PATH",
              help="The matrix to run (configs/matrices/NAME.yaml or a YAML file in the project).")
@click.option("--train", "train_config", default=None, metavar="NAME|PATH",
              help="Run `raybench train` instead, with this config (configs/train/NAME.yaml or a path).")
@click.option("--out", default=None, metavar="URI|PATH",
              help="Where the run writes: a URI (s3://, gs://) or an absolute path every node mounts "
                   "(--train: a path only).")
@click.option("--wait", is_flag=True,
              help="Follow the logs until the job ends; exit non-zero unless it SUCCEEDED.")
@click.option("--runtime-env", "runtime_env_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A runtime_env YAML merged over the job spec's (pip, env_vars, working_dir, ...).")
@click.option("--spec", "spec_name", default=None, metavar="NAME|PATH",
              help="The Ray Jobs spec (jobs/NAME.yaml); default: jobs/matrix.yaml or jobs/train.yaml.")
@click.option("--json", "as_json", is_flag=True, help="Print the submission as JSON.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="First run a one-line job with the same runtime_env that imports raybench: a cluster "
                   "whose Python cannot is named with the fix before the real job is sent.")
@dashboard_options
@click.argument("driver_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- DRIVER_ARGS...]")
def submit(dash, matrix, train_config, out, wait, runtime_env_file, spec_name, as_json, check, driver_args):
    """Run a matrix (or a training run) on a Ray cluster as a Ray Job.

    \b
    Uploads this project as the job's working_dir (minus .venv, runs, data and caches) and
    runs `raybench run --matrix NAME --out OUT` there; prints the job id and its dashboard page.
    Arguments after `--` go to the driver, e.g. `-- --models osnet-x1_0-market --force`.
    The token of a Ray 2.60 cluster is read as Ray reads it: RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token.
    \b
      raybench submit --matrix full --address http://HEAD:8265 --out s3://bucket/runs/full
      raybench submit --matrix smoke --address http://127.0.0.1:8265 --out /tmp/smoke --wait
    """
    from raybench.console import notice, print_json
    from raybench.errors import SpecError
    from raybench.jobs import submit as jobs

    if (matrix is None) == (train_config is None):
        raise SpecError("give exactly one of --matrix NAME and --train CONFIG")
    if matrix is not None:
        (target, run_name), default_spec = jobs.matrix_target(matrix), "matrix"
    else:
        (target, run_name), default_spec = jobs.train_target(train_config), "train"
        jobs.check_out(out, uri_ok=False)
    spec = jobs.load_job_spec(spec_name or default_spec)
    override = jobs.load_runtime_env(runtime_env_file) if runtime_env_file else None
    sub = jobs.build_submission(spec, target, run_name, out, driver_args, override)
    if out is None:
        notice("note: no --out: results stay in the job's working directory on the head node; "
               "give a URI or a shared path to keep them")
    if check and jobs.check_cluster(dash, sub) is None:
        notice(f"note: the cluster check did not finish in {jobs.CHECK_TIMEOUT_S:g} s; submitting anyway")
    job_id = jobs.submit(dash, sub)
    if as_json:
        print_json({"job_id": job_id, "dashboard": dash.job_url(job_id), "entrypoint": sub.entrypoint})
    else:
        click.echo(f"submitted job {job_id}")
        click.echo(f"dashboard: {dash.job_url(job_id)}")
    if not wait:
        notice(f"follow it: raybench logs {job_id} --follow --address {dash.shown}")
        return
    # With --json, stdout stays one JSON document: the log goes to stderr.
    _follow_and_exit(dash, job_id, sys.stderr if as_json else sys.stdout)


def _follow_and_exit(dash, job_id: str, stream=None) -> None:
    """Stream the logs; exit 0 if the job SUCCEEDED, JOB_FAILED_EXIT otherwise."""
    from raybench.console import notice
    from raybench.jobs import submit as jobs
    from raybench.ray_runtime import JobLog

    stream = stream or sys.stdout

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    log = JobLog(write)
    try:
        status = jobs.follow(dash, job_id, log)
        log.close()
    except KeyboardInterrupt:
        notice(f"\nstopped following; job {job_id} keeps running "
               f"(stop it: raybench stop {job_id} --address {dash.shown})")
        sys.exit(130)
    info = jobs.job_info(dash, job_id)
    took = f" after {info['seconds']:g} s" if info.get("seconds") is not None else ""
    detail = f": {info['message']}" if status != "SUCCEEDED" and info.get("message") else ""
    notice(f"job {job_id} {status}{took}{detail}")
    if status != "SUCCEEDED":
        sys.exit(JOB_FAILED_EXIT)


@click.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@dashboard_options
def status(dash, job_id, as_json):
    """The status of one job, or a table of all jobs on the cluster (newest first)."""
    from raybench.console import print_json, print_table
    from raybench.jobs import submit as jobs

    if job_id is None:
        rows = jobs.list_jobs(dash)
        if as_json:
            print_json(rows)
        else:
            print_table(rows, ["job", "status", "started", "seconds", "entrypoint"],
                        title=f"jobs on {dash.shown}")
        return
    row = jobs.job_info(dash, job_id)
    row["dashboard"] = dash.job_url(job_id)
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        if value not in (None, ""):
            click.echo(f"{key + ':':<12}{value}")


@click.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing until the job ends; exit non-zero unless it SUCCEEDED.")
@dashboard_options
def logs(dash, job_id, follow):
    """Print a job's logs (driver stdout and stderr)."""
    from raybench.jobs import submit as jobs
    from raybench.ray_runtime import JobLog

    if follow:
        _follow_and_exit(dash, job_id)
        return
    log = JobLog(lambda text: click.echo(text, nl=False))
    log(jobs.job_logs(dash, job_id))
    log.close()


@click.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job has stopped.")
@dashboard_options
def stop(dash, job_id, wait):
    """Stop a running job (a finished one is left as it is)."""
    from raybench.jobs import submit as jobs

    requested, before = jobs.stop(dash, job_id)
    if not requested:
        click.echo(f"job {job_id} already ended: {before}")
        return
    click.echo(f"stop requested for job {job_id} (was {before})")
    if wait:
        click.echo(f"job {job_id} {jobs.wait(dash, job_id)}")
