"""k8s.manifests, k8s.validate and k8s.apply: a Namespace, Deployment and Service for a project,
validated offline against the Kubernetes schemas, applied with kubectl behind a person's approval.

Validation uses kubernetes-validate's bundled JSON schemas in strict mode (an unknown field is an
error, as ``kubectl apply`` with server-side validation would report it) for the Kubernetes version
the platform's rules name. ``k8s.apply`` is the one tool here that acts outside the workspace, so it
is ``risky``; it validates before it runs kubectl, and with no context configured it only asks for a
client-side dry run. That dry run still reads the API server's resource types through the current
kubeconfig, so on a machine with no kubeconfig context, or whose cluster kubectl cannot reach (its own
"connection refused", "no such host", timeout), the tool answers ``mode: offline``: validated offline,
not applied, and why. kubectl's "Unable to connect to the server" alone is not such a reason: it also
opens a credential plugin's or a certificate's failure, a configured context that is broken, which
stays an error with kubectl's words. It never reports a run of kubectl that did not reach a cluster as
applied; with a context configured, an unreachable cluster stays an error, since a person asked for it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgecrew.errors import ToolError
from edgecrew.platform.config import require
from edgecrew.platform.project import project_facts
from edgecrew.platform.workspace import Workspace
from edgecrew.platform.yamlio import dump_yaml

__all__ = ["MANIFEST_DIR", "apply_manifests", "validate_manifests", "write_manifests"]

MANIFEST_DIR = "deploy/k8s"
KUBECTL_TIMEOUT_S = 90.0
CONTEXT_TIMEOUT_S = 15.0  # kubectl config current-context reads only the kubeconfig
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RUN_AS = 65532  # the templates' Dockerfiles run as this uid


def _labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": name,
        "app.kubernetes.io/managed-by": "edgecrew",
    }


def manifests(name: str, image: str, port: int, namespace: str, replicas: int) -> dict[str, dict[str, Any]]:
    """The three resources, by the file each is written to."""
    labels = _labels(name)
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    container = {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(port)}, {"name": "OTEL_SERVICE_NAME", "value": name}],
        "readinessProbe": {**probe, "periodSeconds": 10},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {**labels, "pod-security.kubernetes.io/enforce": "restricted"}},
        },
        "deployment.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": RUN_AS,
                            "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                    },
                },
            },
        },
        "service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
    }


def write_manifests(
    ws: Workspace, project: Path, image: str, port: int, namespace: str | None, replicas: int
) -> dict[str, Any]:
    """Write the Namespace, Deployment and Service of ``project`` into its deploy/k8s/."""
    facts = project_facts(project)
    if facts.kind == "cli":
        raise ToolError(
            f"'{facts.name}' is a cli project: it does not serve HTTP, so it has no Deployment or Service; "
            "k8s.manifests is for python-service and fastapi-app projects"
        )
    if not image.strip() or any(c.isspace() for c in image):
        raise ToolError(f"'{image}' is not an image reference; give one like registry.example.com/{facts.name}:0.1.0")
    namespace = namespace or facts.name
    for what, value in (("namespace", namespace), ("project name", facts.name)):
        if len(value) > 63 or not DNS_LABEL.fullmatch(value):
            raise ToolError(
                f"{what} '{value}' is not a Kubernetes name (lowercase letters, digits and '-', at most 63)"
            )
    header = f"# Written by k8s.manifests for {facts.name}; check with k8s.validate.\n"
    files = [
        ws.write_text(project / MANIFEST_DIR / file, header + dump_yaml(resource))
        for file, resource in manifests(facts.name, image.strip(), port, namespace, replicas).items()
    ]
    tag = image.rsplit("/", 1)[-1]
    warnings = []
    if "@" not in tag and (":" not in tag or tag.endswith(":latest")):
        warnings.append(f"image '{image}' has no fixed tag; deploy a version or commit tag, never latest")
    return {"files": files, "namespace": namespace, "warnings": warnings}


def _manifest_files(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    return sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


def validate_manifests(ws: Workspace, target: Path, version: str) -> dict[str, Any]:
    """Validate every resource of a manifest file, or of every *.yaml under a directory, against the
    schemas of Kubernetes ``version``; {valid, version, resources, errors: [{file, resource, field, message}]}."""
    require("kubernetes_validate", "kubernetes-validate", "k8s.validate")
    import yaml
    from kubernetes_validate import utils as kv

    if not target.exists():
        raise ToolError(f"no file or directory '{ws.rel(target)}' in the workspace; k8s.manifests writes them")
    files = _manifest_files(target)
    if not files:
        raise ToolError(f"no *.yaml manifests under '{ws.rel(target)}'; k8s.manifests writes them")
    resources: list[str] = []
    errors: list[dict[str, str]] = []
    for file in files:
        ws.check(file, "read")
        rel = ws.rel(file)
        try:  # PyYAML, as kubectl reads YAML 1.1 (yes/no/on are booleans there)
            documents = [d for d in yaml.safe_load_all(file.read_text(encoding="utf-8")) if d is not None]
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            errors.append(
                {"file": rel, "resource": "", "field": "", "message": f"not valid YAML: {' '.join(str(exc).split())}"}
            )
            continue
        for index, doc in enumerate(documents):
            if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
                errors.append(
                    {
                        "file": rel,
                        "resource": f"document {index + 1}",
                        "field": "",
                        "message": "a resource needs apiVersion and kind",
                    }
                )
                continue
            name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
            resources.append(f"{rel}: {name}")
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                field = ".".join(str(p) for p in exc.path) or "(the resource)"
                errors.append({"file": rel, "resource": name, "field": field, "message": exc.message})
            except kv.SchemaNotFoundError:
                errors.append(
                    {
                        "file": rel,
                        "resource": name,
                        "field": "apiVersion",
                        "message": f"Kubernetes {version} has no {doc['kind']} in {doc['apiVersion']}",
                    }
                )
            except kv.VersionNotSupportedError:
                raise ToolError(
                    f"kubernetes-validate has no schemas for Kubernetes {version} (it has "
                    f"{kv.all_versions()[0]} to {kv.latest_version()}); change kubernetes.version in the platform rules"
                ) from None
    return {"valid": not errors, "version": version, "resources": resources, "errors": errors}


def apply_manifests(
    ws: Workspace, target: Path, namespace: str | None, context: str | None, kubectl: str, version: str
) -> dict[str, Any]:
    """``kubectl apply -f`` the manifests against ``context``, or ``--dry-run=client`` without one; with
    no context and no cluster kubectl can reach, the result says the manifests were validated offline and
    not applied (``mode: offline``)."""
    program = shutil.which(kubectl)
    if program is None:
        raise ToolError(
            f"kubectl is not installed here ('{kubectl}' is not on PATH); install it "
            "(https://kubernetes.io/docs/tasks/tools/) on the machine that runs edgecrew, or apply the "
            "manifests from your release pipeline"
        )
    checked = validate_manifests(ws, target, version)
    if not checked["valid"]:
        errors = checked["errors"]
        first = "; ".join(
            f"{', '.join(p for p in (e['file'], e['resource'], e['field']) if p)}: {e['message']}" for e in errors[:3]
        )
        more = f"; and {len(errors) - 3} more (k8s.validate lists them all)" if len(errors) > 3 else ""
        count = f" ({len(errors)} errors)" if len(errors) > 1 else ""
        raise ToolError(f"refusing to apply manifests that fail k8s.validate{count}: {first}{more}")
    if namespace is not None and not DNS_LABEL.fullmatch(namespace):
        raise ToolError(f"namespace '{namespace}' is not a Kubernetes name (lowercase letters, digits and '-')")
    if namespace:
        _check_namespace(ws, target, namespace)
    args = ["apply", "-f", ws.rel(target)]
    args += ["--recursive"] if target.is_dir() else []
    args += ["--namespace", namespace] if namespace else []
    args += ["--context", context] if context else ["--dry-run=client"]
    command = " ".join(["kubectl", *args])
    result: dict[str, Any] = {"context": context, "command": command, "resources": checked["resources"]}
    current = None
    if context is None:
        found = _kubectl(ws, program, ["config", "current-context"], CONTEXT_TIMEOUT_S)
        if found is None or found.returncode != 0 or not found.stdout.strip():
            said = _first_line((found.stderr or found.stdout) if found else "") or "no answer"
            return result | _offline(f"no kubeconfig context: {said}")  # kubectl config current-context's words
        current = found.stdout.strip().splitlines()[0]
    proc = _kubectl(ws, program, args, KUBECTL_TIMEOUT_S)
    if proc is None:
        if context is None:
            return result | _offline(f"kubectl got no answer from context '{current}' in {KUBECTL_TIMEOUT_S:g}s")
        raise ToolError(f"kubectl apply did not finish in {KUBECTL_TIMEOUT_S:g}s; is the cluster reachable?")
    # kubectl may print "unable to recognize" (it could not map a kind to the API) and still exit 0
    if proc.returncode != 0 or "unable to recognize" in proc.stderr:
        detail = (proc.stderr or proc.stdout).strip()
        misconfigured = _MISCONFIGURED.search(detail)
        unreachable = None if misconfigured else _UNREACHABLE.search(detail)
        if context is None and unreachable is not None:
            return result | _offline(f"context '{current}': {_reason(detail, unreachable)}")
        if context:
            hint = f"; the context is '{context}': check it with kubectl config get-contexts"
        elif misconfigured:
            what = "certificate check" if misconfigured.group(0).lower() == "x509" else "credential plugin"
            hint = (
                f"; the current context '{current}' is configured but its {what} failed: fix its user or "
                "cluster in the kubeconfig (kubectl config view --minify), or switch context"
            )
        else:
            hint = (
                f"; it was a client dry run against the current context '{current}' (the manifests already "
                "passed k8s.validate offline)"
            )
        raise ToolError(f"kubectl apply failed (exit {proc.returncode}): {detail[-1500:]}{hint}")
    return result | {
        "mode": "applied" if context else "dry-run",
        "applied": context is not None,
        "output": proc.stdout.strip()[-4000:],
    }


def _check_namespace(ws: Workspace, target: Path, namespace: str) -> None:
    """Refuse ``--namespace`` when a manifest names another one: kubectl apply refuses that too ("the
    namespace from the provided object ... does not match"), so offline it must not pass as validated.
    A resource without a namespace takes the given one, as kubectl gives it."""
    import yaml

    others: list[tuple[str, str]] = []  # (where, the manifest's namespace)
    for file in _manifest_files(target):  # validate_manifests has read each one already
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            meta = doc.get("metadata") if isinstance(doc, dict) else None
            if not isinstance(meta, dict) or not meta.get("namespace") or meta["namespace"] == namespace:
                continue
            others.append((f"{ws.rel(file)} puts {doc['kind']}/{meta.get('name', '?')} in", str(meta["namespace"])))
    if not others:
        return
    said = {theirs for _, theirs in others}
    instead = f"give namespace '{next(iter(said))}' or leave it out" if len(said) == 1 else "leave the namespace out"
    raise ToolError(
        f"namespace '{namespace}' does not match the manifests: "
        + "; ".join(f"{where} namespace '{theirs}'" for where, theirs in others[:5])
        + f" (kubectl apply refuses a namespace that differs from the manifest's); {instead}, or write the "
        f"manifests for '{namespace}' with k8s.manifests"
    )


# kubectl's own words when it cannot reach the API server: a dial error or a timeout (as opposed to a
# server that answered "no"). "Unable to connect to the server" counts only with one of these after it.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|no route to host|network is unreachable|"
    r"tls handshake timeout|context deadline exceeded|the connection to the server \S+ was refused",
    re.IGNORECASE,
)
# ...and its words when the context is broken rather than out of reach: a credential plugin that failed
# (even one that could not reach its own login server) or a certificate the client refused.
_MISCONFIGURED = re.compile(r"getting credentials|exec plugin|x509", re.IGNORECASE)
_DIAL = re.compile(r"(?:dial tcp|Unable to connect to the server)[^;\"\n]*", re.IGNORECASE)


def _kubectl(ws: Workspace, program: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    """kubectl's completed process, or None when it did not finish in ``timeout_s``."""
    try:
        return subprocess.run(
            [program, *args],
            cwd=ws.root,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None


def _offline(reason: str) -> dict[str, Any]:
    """The result of an apply that could not reach a cluster: nothing applied, and why."""
    return {
        "mode": "offline",
        "applied": False,
        "reason": reason,
        "note": f"validated offline, not applied: no cluster reachable ({reason})",
        "output": "",
    }


def _reason(detail: str, unreachable: re.Match[str]) -> str:
    """The part of kubectl's error that says why it could not connect ("dial tcp ...: connection refused")."""
    dial = _DIAL.search(detail)
    return _first_line(dial.group(0) if dial else unreachable.group(0))


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    return line[:197] + "..." if len(line) > 200 else line
