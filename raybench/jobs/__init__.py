"""Ray Jobs from a terminal: submit a matrix or a training run to a cluster, follow its status
and logs, stop it.

submit.py builds the job (entrypoint, runtime_env, job spec) and drives the Jobs API;
dashboard.py talks to the dashboard (timeouts, token, headers, one-line errors). Neither
imports ray at module level.
"""
