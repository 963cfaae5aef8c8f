"""cluster/ and jobs/ manifests: they parse, carry what KubeRay and the Ray cluster launcher
require, agree with each other, and their entry points name real raybench commands and matrices."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from raybench.cli import COMMANDS
from raybench.paths import PROJECT_ROOT

CLUSTER = PROJECT_ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHERS = sorted((CLUSTER / "launcher").glob("*.yaml"))
MATRICES = {p.stem for p in (PROJECT_ROOT / "configs" / "matrices").glob("*.yaml")}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def raybench_command(entrypoint: str) -> tuple[str, list[str]]:
    """(sub-command, its arguments) of `raybench CMD ...` or `python -m raybench CMD ...`."""
    words = shlex.split(entrypoint)
    if words[:3] == ["python", "-m", "raybench"]:
        words = words[3:]
    elif words[:1] == ["raybench"]:
        words = words[1:]
    else:
        pytest.fail(f"not a raybench entry point: {entrypoint!r}")
    assert words and words[0] in COMMANDS, f"{words[:1]} is not a raybench command ({sorted(COMMANDS)})"
    return words[0], words[1:]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# --- KubeRay ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raycluster():
    return load(KUBERAY / "raycluster.yaml")


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_raycluster_has_what_kuberay_requires(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    spec = raycluster["spec"]
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert any(p["containerPort"] == 8265 for p in containers(head)[0]["ports"])
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_an_autoscaling_gpu_worker_group(raycluster):
    gpu_groups = [g for g in raycluster["spec"]["workerGroupSpecs"]
                  if "nvidia.com/gpu" in containers(g)[0]["resources"]["limits"]]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        resources = containers(group)[0]["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert group["maxReplicas"] > group["minReplicas"]  # it can scale
        tolerations = group["template"]["spec"]["tolerations"]
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_every_pod_mounts_the_shared_volume(raycluster):
    claim = load(KUBERAY / "storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    spec = raycluster["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in containers(group)[0]["volumeMounts"]}
        shared = volumes[mounts["/mnt/raybench"]]
        assert shared["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_rayjob_runs_the_full_matrix_on_the_same_cluster(raycluster):
    job = load(KUBERAY / "rayjob-full.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["rayClusterSpec"] == raycluster["spec"], "rayjob-full.yaml drifted from raycluster.yaml"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    command, args = raybench_command(job["spec"]["entrypoint"])
    assert command == "run"
    assert option(args, "--matrix") == "full" and "full" in MATRICES
    assert option(args, "--out").startswith("/mnt/raybench/") and "--shared-out" in args


# --- Ray cluster launcher ---------------------------------------------------------------------


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.stem)
def test_launcher_config_validates_as_ray_up_does(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(path)
    assert config["head_node_type"] in config["available_node_types"]
    validate_config(prepare_config(config))


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.stem)
def test_launcher_has_gpu_workers_and_token_auth(path):
    config = load(path)
    types = config["available_node_types"]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    gpu = [t for t in workers if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] > t.get("min_workers", 0) for t in gpu)
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in config[commands])
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert config["provider"]["type"] == path.stem
    assert any("/mnt/raybench" in option for option in config["docker"]["run_options"])


def test_gcp_gpu_nodes_get_an_accelerator_and_a_driver():
    types = load(CLUSTER / "launcher" / "gcp.yaml")["available_node_types"]
    gpu = [t["node_config"] for t in types.values() if t.get("resources", {}).get("GPU")]
    for node in gpu:
        assert node["guestAccelerators"][0]["acceleratorCount"] >= 1
        assert {"key": "install-nvidia-driver", "value": "True"} in node["metadata"]["items"]


# --- one image, one Ray version ---------------------------------------------------------------


def test_one_image_and_the_clients_ray_version_everywhere(raycluster):
    import ray

    spec = raycluster["spec"]
    images = {c["image"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]] for c in containers(g)}
    images |= {load(p)["docker"]["image"] for p in LAUNCHERS}
    assert len(images) == 1, images
    assert spec["rayVersion"] == ray.__version__
    base = re.search(r"^FROM rayproject/ray:(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).startswith(ray.__version__ + "-")


# --- entry points in jobs/ and in the README --------------------------------------------------


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.stem)
def test_job_specs_name_real_commands(path):
    spec = load(path)
    command, _ = raybench_command(spec["entrypoint"].format(target="X"))
    assert command in ("run", "train")
    excludes = spec["runtime_env"]["excludes"]
    for cache in (".venv/", "runs/", "data/", "results/"):
        assert cache in excludes


def test_readme_commands_are_real():
    """Every raybench command in cluster/README.md's code blocks exists, and so do its matrices."""
    text = (CLUSTER / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```(?:bash)?\n(.*?)```", text, re.S))
    uses = re.findall(r"(?:^|\s)(?:python -m )?raybench ([a-z][a-z-]*)((?: [^\s#;|]+)*)", blocks, re.M)
    assert any(cmd == "submit" and "--matrix full" in args for cmd, args in uses)
    for cmd, args in uses:
        assert cmd in COMMANDS, f"raybench {cmd}: no such command"
        matrix = option(args.split(), "--matrix")
        assert matrix is None or matrix in MATRICES, f"raybench {cmd}{args}: no matrix {matrix}"
