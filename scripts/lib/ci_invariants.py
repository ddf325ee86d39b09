#!/usr/bin/env python3
"""Invariants of the expanded GitLab pipeline (the output of `gitlab-ci-local --preview`).

Run by scripts/check-ci.sh; prints one line per violation, `[code] job: message`, and exits 1
when there is any (0 when none, 2 on bad input). The codes:

  image-unpinned       a job or service image that the project's one pinning rule rejects
                       (tests/image-pin/src/lib.rs, asked through its `image-pin` binary,
                       named by --image-pin: untagged, :latest, a floating tag such as `alpine`,
                       a major-only tag such as `rust:1`), or with an unresolved variable
  production-rules     no production deploy job; one with allow_failure or only/except; or one
                       that gitlab-ci-local's rule evaluation (--list-json per scenario: push and
                       web pipelines on main, develop, a feature branch, a merge request, a
                       schedule, a tag) does not make `manual` on main and `never` elsewhere
  needs-tests          a build or deploy job that does not need every test-stage job, directly
                       or through other needs; or a `needs` naming a job that does not exist
  needs-absent         a job that needs a job its rules leave out of the same pipeline (GitLab
                       then refuses to create the pipeline), in every scenario gitlab-ci-local
                       evaluated
  script-missing       a path under scripts/, tests/, deploy/ or crates/ (or a compose / .env
                       file) that a job's script uses and that is not in the repository
  script-not-executable  a script under scripts/ that a job calls and that is not executable
  artifact-not-produced  an artifact path (paths or reports) that the job's script does not
                       produce: neither it nor its directory appears in the script, and no
                       command of the script is known to write it (KNOWN_OUTPUTS below)
  interruptible        a non-deploy job that is not `interruptible: true`, or a deploy job
                       that is
  msrv-matrix          no test job's parallel:matrix covers both the MSRV (Cargo.toml
                       `rust-version`) and the pipeline's stable RUST_VERSION
  notify-missing       a deploy job whose after_script does not post to Slack
  variable-undocumented  a variable the pipeline reads that it does not define, that GitLab does
                       not predefine, and that docs/ci-variables.md does not list
  secret-literal       a variable whose name says secret (PASSWORD, TOKEN, ...) set to a literal
                       value in the YAML instead of a reference to a CI/CD variable
  tests-outside-entry-point  a job that runs the test suites (cargo test, cargo nextest, cargo
                       llvm-cov) itself instead of through scripts/test.sh, whose steps install
                       what the suites call (kubectl, tansu, Prometheus...): the job's image alone
                       lacks them

Rules are never evaluated here: gitlab-ci-local evaluates them (scripts/check-ci.sh passes its
--list-json output of each scenario as --gcl-scenario LABEL=FILE; a LABEL starting with "main"
is a main-branch pipeline).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

# Top-level keys of .gitlab-ci.yml that are not jobs.
GLOBAL_KEYWORDS = {
    "default", "include", "stages", "variables", "workflow", "image", "services", "cache",
    "before_script", "after_script", "spec",
}

# Variables GitLab (or the runner, or the image's shell) provides; not to be documented.
PREDEFINED_PREFIXES = ("CI_", "GITLAB_", "FF_", "RUNNER_", "DOCKER_ENV_")
SHELL_VARIABLES = {"HOME", "PATH", "PWD", "USER", "SHELL", "TMPDIR", "HOSTNAME", "IFS", "OLDPWD"}

SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|PRIVATE_KEY|WEBHOOK|CREDENTIAL", re.I)

# Commands whose outputs are not named on their command line. Each entry: a regex over one
# (variable-expanded) script command, and a function of the match and the context giving the
# repository-relative paths it writes.
#   cargo nextest run --profile P        -> <target>/nextest/P/<junit path of P in nextest.toml>
#   cargo llvm-cov nextest --profile P   -> <target>/llvm-cov-target/nextest/P/<junit path>
#                                           (cargo-llvm-cov builds in <target>/llvm-cov-target)
#   cargo install --root DIR             -> DIR/bin/
#   scripts/bench.sh                     -> docs/benchmarks.md (issue E: it writes the report)


@dataclass
class Context:
    """What the checks read besides the pipeline."""

    root: Path
    nextest_junit: dict[str, str]
    msrv: str | None
    documented: set[str]
    # Predefined variables that still need setting up in GitLab, so the doc must name them.
    documented_required: frozenset[str] = frozenset({"CI_DEPLOY_USER", "CI_DEPLOY_PASSWORD"})


def _nextest_junit(ctx: Context, profile: str, target: str, sub: str = "") -> list[str]:
    junit = ctx.nextest_junit.get(profile)
    if junit is None:
        return []
    return [norm(f"{target}/{sub}nextest/{profile}/{junit}")]


KNOWN_OUTPUTS = [
    (re.compile(r"\bcargo\s+nextest\s+run\b.*?--profile[ =](\S+)"),
     lambda m, ctx, target, env: _nextest_junit(ctx, m.group(1), target)),
    (re.compile(r"\bcargo\s+llvm-cov\s+nextest\b.*?--profile[ =](\S+)"),
     lambda m, ctx, target, env: _nextest_junit(ctx, m.group(1), target, "llvm-cov-target/")),
    (re.compile(r"\bcargo\s+install\b.*?--root[ =]\"?([^\"\s]+)"),
     lambda m, ctx, target, env: [norm(m.group(1)) + "/bin/"]),
    (re.compile(r"(?:^|[\s;&|(])(?:\./)?scripts/bench\.sh\b"),
     lambda m, ctx, target, env: ["docs/benchmarks.md"]),
    # The test steps of scripts/test.sh run nextest with the ci profile.
    (re.compile(r"(?:\./)?scripts/test\.sh\s+--only\s+(?:tests|unit|integration|e2e)\b"),
     lambda m, ctx, target, env: _nextest_junit(ctx, "ci", target)),
    # Its clippy step writes GitLab's code-quality report where CLIPPY_CODE_QUALITY says.
    (re.compile(r"(?:\./)?scripts/test\.sh\s+--only\s+clippy\b"),
     lambda m, ctx, target, env: [norm(expand(env["CLIPPY_CODE_QUALITY"], env))] if env.get("CLIPPY_CODE_QUALITY") else []),
    # Its cargo-tools step installs into LOGPIPE_TOOLS.
    (re.compile(r"(?:\./)?scripts/test\.sh\s+--only\s+cargo-tools\b"),
     lambda m, ctx, target, env: [norm(expand(env["LOGPIPE_TOOLS"], env)) + "/bin/"] if env.get("LOGPIPE_TOOLS") else []),
]

# Paths a job's script may use that must exist in the repository.
REPO_PATH = re.compile(
    r"(?<![\w./$-])(?:\./)?((?:scripts|tests|deploy|crates)/[A-Za-z0-9_.*/-]+"
    r"|docker-compose[A-Za-z0-9_.*-]*\.ya?ml|\.env\.[a-z]+)"
)
# A path right after these is written by the command, not read.
OUTPUT_MARK = re.compile(r"(?:>>?|--output(?:-path)?[ =]|--summary-export[ =]|-o )\s*\"?$")


def norm(path: str) -> str:
    """Repository-relative form of a path from the pipeline."""
    for prefix in ("$CI_PROJECT_DIR/", "${CI_PROJECT_DIR}/", "./"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return path


class Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, code: str, job: str, message: str) -> None:
        if (code, job, message) not in self.items:  # matrix jobs repeat the same finding
            self.items.append((code, job, message))


# ------------------------------------------------------------------------------------------
# Loading


class _Loader(yaml.SafeLoader):
    pass


def _reference(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    # An unexpanded !reference (only in hand-written fixtures): kept as a marker list.
    return ["!reference", *loader.construct_sequence(node)]


_Loader.add_constructor("!reference", _reference)


def load_pipeline(path: Path) -> dict:
    with path.open() as f:
        data = yaml.load(f, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return data


def jobs_of(pipeline: dict) -> dict[str, dict]:
    return {
        name: body for name, body in pipeline.items()
        if name not in GLOBAL_KEYWORDS and not name.startswith(".") and isinstance(body, dict)
    }


def flatten(value: object) -> list[str]:
    """Script lines: nested lists (expanded !reference) flattened."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    for item in value:
        out.extend(flatten(item))
    return out


def script_lines(job: dict, keys=("before_script", "script", "after_script")) -> list[str]:
    lines: list[str] = []
    for key in keys:
        lines.extend(flatten(job.get(key)))
    return lines


def stage_of(job: dict) -> str:
    return job.get("stage", "test")


def env_name(job: dict) -> str | None:
    env = job.get("environment")
    if isinstance(env, str):
        return env
    if isinstance(env, dict):
        return env.get("name")
    return None


def env_action(job: dict) -> str:
    env = job.get("environment")
    if isinstance(env, dict):
        return env.get("action", "start")
    return "start"


def is_deploy_job(job: dict) -> bool:
    return stage_of(job) == "deploy"


# ------------------------------------------------------------------------------------------
# Variables


VAR_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
# Any read of a variable, also ${NAME:-default} and ${NAME:?message}.
VAR_READ = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _var_value(value: object) -> str:
    if isinstance(value, dict):
        value = value.get("value", "")
    return "" if value is None else str(value)


def variable_sets(pipeline: dict, job: dict) -> list[dict[str, str]]:
    """One variable map per matrix combination (global < job < matrix)."""
    base = {k: _var_value(v) for k, v in (pipeline.get("variables") or {}).items()}
    base.update({k: _var_value(v) for k, v in (job.get("variables") or {}).items()})
    matrix = (job.get("parallel") or {}).get("matrix") if isinstance(job.get("parallel"), dict) else None
    if not matrix:
        return [base]
    out = []
    for entry in matrix:
        keys = list(entry)
        values = [v if isinstance(v, list) else [v] for v in entry.values()]
        for combo in itertools.product(*values):
            merged = dict(base)
            merged.update({k: str(v) for k, v in zip(keys, combo)})
            out.append(merged)
    return out


def expand(text: str, variables: dict[str, str], extra: dict[str, str] | None = None) -> str:
    """Expands the variables the pipeline defines; leaves every other reference as it is."""
    env = dict(variables)
    if extra:
        env.update(extra)
    for _ in range(10):
        def sub(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            return env[name] if name in env else m.group(0)
        new = VAR_REF.sub(sub, text)
        if new == text:
            break
        text = new
    return text


# ------------------------------------------------------------------------------------------
# 1. Pinned images

# Stand-ins for predefined variables that are acceptable in an image reference.
IMAGE_PREDEFINED = {
    "CI_REGISTRY_IMAGE": "registry.invalid/project",
    "CI_REGISTRY": "registry.invalid",
    "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
}
# The `image-pin` binary (tests/image-pin): the one rule for pinned images,
# shared with the Dockerfile check. Set from --image-pin.
IMAGE_PIN: list[str] = []


@functools.lru_cache(maxsize=None)
def image_problem(ref: str) -> str | None:
    """Why `ref` is not pinned, by the image-pin binary's verdict (None when it is)."""
    if "$" in ref:
        return "uses a variable that is not defined in the pipeline"
    if not IMAGE_PIN:
        raise SystemExit("ci_invariants.py: --image-pin BINARY is required to judge image pins")
    done = subprocess.run([*IMAGE_PIN, ref], capture_output=True, text=True, check=False)
    verdict = done.stdout.rstrip("\n").split("\t")
    if done.returncode != 0 or len(verdict) < 2 or verdict[1] != ref:
        raise SystemExit(f"ci_invariants.py: {IMAGE_PIN[0]} {ref} failed "
                         f"(exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return verdict[2] if verdict[0] == "unpinned" and len(verdict) > 2 else None


def _image_name(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("name")
    return None


def check_images(pipeline: dict, jobs: dict, v: Violations) -> None:
    default = pipeline.get("default") or {}
    for name, job in jobs.items():
        if "trigger" in job:
            continue
        image = job.get("image", default.get("image", pipeline.get("image")))
        services = job.get("services", default.get("services", pipeline.get("services"))) or []
        refs: list[tuple[str, object]] = []
        if image is None:
            v.add("image-unpinned", name, "no image: the runner's default image is not pinned")
        else:
            refs.append(("image", image))
        refs.extend(("service", s) for s in services)
        seen: set[str] = set()
        for variables in variable_sets(pipeline, job):
            for kind, raw in refs:
                ref = _image_name(raw)
                if not ref:
                    v.add("image-unpinned", name, f"{kind} without a name")
                    continue
                resolved = expand(expand(ref, variables), IMAGE_PREDEFINED)
                problem = image_problem(resolved)
                key = f"{kind}:{ref}:{resolved}"
                if problem and key not in seen:
                    seen.add(key)
                    v.add("image-unpinned", name, f"{kind} {ref} ({resolved}) {problem}")


# ------------------------------------------------------------------------------------------
# 2. Production deploy: manual on main, never elsewhere (as gitlab-ci-local evaluates it)


def production_jobs(jobs: dict) -> dict[str, dict]:
    return {n: j for n, j in jobs.items()
            if is_deploy_job(j) and env_name(j) == "production" and env_action(j) == "start"}


MATRIX_NAME = re.compile(r": \[[^\]]*\]$")


def load_scenarios(specs: list[str]) -> list[tuple[str, bool, dict[str, str]]]:
    """(label, is a main pipeline, job -> when) per gitlab-ci-local --list-json file."""
    out = []
    for spec in specs:
        label, _, path = spec.partition("=")
        listed = json.loads(Path(path).read_text())
        when: dict[str, str] = {}
        for job in listed:
            # A parallel:matrix job is listed once per combination, as `NAME: [VALUES]`.
            name = MATRIX_NAME.sub("", job["name"])
            runs = job.get("when", "on_success")
            if when.get(name, "never") == "never":
                when[name] = runs
        out.append((label, label.startswith("main"), when))
    return out


def check_production(jobs: dict, scenarios, v: Violations) -> None:
    prod = production_jobs(jobs)
    if not prod:
        v.add("production-rules", "-", "no deploy-stage job with environment production")
    for name, job in prod.items():
        if job.get("allow_failure") is True:
            v.add("production-rules", name, "allow_failure: true lets the pipeline pass without it")
        if "only" in job or "except" in job:
            v.add("production-rules", name, "uses only/except; use rules")
        for label, on_main, when in scenarios:
            got = when.get(name, "absent")
            want = "manual" if on_main else "never"
            if got != want and not (want == "never" and got == "absent"):
                v.add("production-rules", name, f"gitlab-ci-local, {label}: when is {got}, expected {want}")


# ------------------------------------------------------------------------------------------
# 3. Build and deploy jobs need the tests


def _need_names(job: dict) -> list[str] | None:
    needs = job.get("needs")
    if needs is None:
        return None
    names = []
    for need in needs:
        if isinstance(need, str):
            names.append(need)
        elif isinstance(need, dict) and "job" in need and "pipeline" not in need and "project" not in need:
            names.append(need["job"])
    return names


def check_needs(pipeline: dict, jobs: dict, v: Violations) -> None:
    stages = [s for s in (pipeline.get("stages") or []) if not s.startswith(".")]
    order = {s: i for i, s in enumerate(stages)}
    tests = {n for n, j in jobs.items() if stage_of(j) == "test"}

    def direct(name: str) -> set[str]:
        names = _need_names(jobs[name])
        if names is None:  # no needs: every job of the earlier stages
            here = order.get(stage_of(jobs[name]), 0)
            return {n for n, j in jobs.items() if order.get(stage_of(j), 0) < here}
        return set(names)

    for name, job in jobs.items():
        for need in _need_names(job) or []:
            if need not in jobs:
                v.add("needs-tests", name, f"needs {need}, which is not a job of this pipeline")
    if not tests:
        v.add("needs-tests", "-", "no job in the test stage")
        return
    for name, job in jobs.items():
        if stage_of(job) not in ("build", "deploy"):
            continue
        closure: set[str] = set()
        todo = [name]
        while todo:
            for need in direct(todo.pop()):
                if need in jobs and need not in closure:
                    closure.add(need)
                    todo.append(need)
        missing = sorted(tests - closure)
        if missing:
            v.add("needs-tests", name, f"does not need the test job(s) {', '.join(missing)}")


def check_needs_present(jobs: dict, scenarios, v: Violations) -> None:
    for label, _, when in scenarios:
        runs = {n: when.get(n, "never") != "never" for n in jobs}
        for name, job in jobs.items():
            if not runs[name]:
                continue
            for need in job.get("needs") or []:
                target = need if isinstance(need, str) else need.get("job")
                optional = isinstance(need, dict) and need.get("optional") is True
                if target in jobs and not runs[target] and not optional:
                    v.add("needs-absent", name, f"{label}: needs {target}, which does not run then")


# ------------------------------------------------------------------------------------------
# 3b. The test suites run through scripts/test.sh, which installs what they call

SUITE_COMMAND = re.compile(r"\bcargo\s+(?:\+\S+\s+)?(?:test|nextest|llvm-cov)\b")


def check_test_entry_point(jobs: dict, v: Violations) -> None:
    for name, job in jobs.items():
        for line in script_lines(job):
            if SUITE_COMMAND.search(line):
                v.add("tests-outside-entry-point", name,
                      f"runs the test suites itself ({line.strip()[:60]}): call scripts/test.sh "
                      "--only tests|unit|integration|e2e, which installs what they need")
                break


# ------------------------------------------------------------------------------------------
# 4. Scripts and files the jobs use exist; scripts are executable


def commands(job: dict, variables: dict[str, str]) -> list[str]:
    """Script commands, variables expanded, backslash continuations joined."""
    text = "\n".join(script_lines(job))
    text = text.replace("\\\n", " ")
    return [expand(line, variables) for line in text.splitlines()]


def check_paths(root: Path, pipeline: dict, jobs: dict, v: Violations) -> None:
    for name, job in jobs.items():
        reported: set[str] = set()
        for variables in variable_sets(pipeline, job):
            for line in commands(job, variables):
                for m in REPO_PATH.finditer(line):
                    path = m.group(1).rstrip(".")
                    if "$" in line[m.start():m.end()] or path in reported:
                        continue
                    if OUTPUT_MARK.search(line[:m.start()]):
                        continue
                    reported.add(path)
                    matches = list(root.glob(path)) if "*" in path else [root / path]
                    existing = [p for p in matches if p.exists()]
                    if not existing:
                        v.add("script-missing", name, f"uses {path}, which is not in the repository")
                        continue
                    if path.startswith("scripts/") and not path.startswith("scripts/lib/"):
                        for p in existing:
                            if p.is_file() and not os.access(p, os.X_OK):
                                v.add("script-not-executable", name, f"calls {path}, which is not executable")


# ------------------------------------------------------------------------------------------
# 5. Declared artifacts are produced by the job's script


def artifact_paths(job: dict) -> list[str]:
    artifacts = job.get("artifacts") or {}
    paths = list(artifacts.get("paths") or [])
    for value in (artifacts.get("reports") or {}).values():
        if isinstance(value, str):
            paths.append(value)
        elif isinstance(value, list):
            paths.extend(value)
        elif isinstance(value, dict) and "path" in value:
            paths.append(value["path"])
    return paths


def check_artifacts(ctx: Context, pipeline: dict, jobs: dict, v: Violations) -> None:
    for name, job in jobs.items():
        for variables in variable_sets(pipeline, job):
            target = norm(expand(variables.get("CARGO_TARGET_DIR", "target"), variables))
            lines = commands(job, variables)
            text = " ".join(norm_line(line) for line in lines)
            produced: list[str] = []
            for line in lines:
                for pattern, outputs in KNOWN_OUTPUTS:
                    for m in pattern.finditer(norm_line(line)):
                        produced.extend(outputs(m, ctx, target, variables))
            for raw in artifact_paths(job):
                path = norm(expand(raw, variables))
                if artifact_produced(path, text, produced):
                    continue
                v.add("artifact-not-produced", name,
                      f"artifact {path} is not written by the job's script"
                      + (f" (known outputs: {', '.join(produced)})" if produced else ""))


def norm_line(line: str) -> str:
    return line.replace("$CI_PROJECT_DIR/", "").replace("${CI_PROJECT_DIR}/", "")


def artifact_produced(path: str, text: str, produced: list[str]) -> bool:
    bare = path.rstrip("/")
    if re.search(rf"(?<![\w.-]){re.escape(bare)}(?![\w-])", text):
        return True
    for out in produced:
        if out.rstrip("/") == bare or out.startswith(bare + "/"):
            return True
    # The directory itself named on its own (e.g. `--output-dir docs`), not as part of a path.
    parent = os.path.dirname(bare)
    if parent and re.search(rf"(?<![\w./-]){re.escape(parent)}/?(?![\w.-]|/[\w.-])", text):
        return True
    return False


# ------------------------------------------------------------------------------------------
# 6. Further house rules: interruptible, MSRV matrix, Slack, documented variables, secrets


def check_interruptible(jobs: dict, v: Violations) -> None:
    for name, job in jobs.items():
        value = job.get("interruptible")
        if is_deploy_job(job) and value is True:
            v.add("interruptible", name, "a deploy job must not be interruptible")
        if not is_deploy_job(job) and value is not True:
            v.add("interruptible", name, "not interruptible: true")


def check_msrv(ctx: Context, pipeline: dict, jobs: dict, v: Violations) -> None:
    stable = _var_value((pipeline.get("variables") or {}).get("RUST_VERSION"))
    wanted = {x for x in (ctx.msrv, stable) if x}
    for job in jobs.values():
        if stage_of(job) != "test":
            continue
        versions = {vs.get("RUST_VERSION") for vs in variable_sets(pipeline, job)}
        if len(versions) > 1 and wanted <= versions:
            return
    v.add("msrv-matrix", "-",
          f"no test job whose parallel:matrix covers RUST_VERSION {sorted(wanted)} "
          "(MSRV from Cargo.toml and the pipeline's stable)")


def check_notify(jobs: dict, v: Violations) -> None:
    for name, job in jobs.items():
        if is_deploy_job(job) and "SLACK_WEBHOOK_URL" not in "\n".join(flatten(job.get("after_script"))):
            v.add("notify-missing", name, "after_script does not notify Slack (.notify-slack)")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, x in value.items() for s in _strings(k) + _strings(x)]
    if isinstance(value, list):
        return [s for x in value for s in _strings(x)]
    return []


def check_variables(ctx: Context, pipeline: dict, jobs: dict, v: Violations) -> None:
    undocumented: dict[str, set[str]] = {}
    for name, job in jobs.items():
        # Defined for this job: global, job and matrix variables, and what its script assigns.
        defined: set[str] = set()
        for variables in variable_sets(pipeline, job):
            defined |= set(variables)
        for line in script_lines(job):
            defined |= set(re.findall(r"(?:^|[\s;(])(?:export\s+)?([A-Z][A-Z0-9_]*)=", line))
        for s in _strings(job):
            for m in VAR_READ.finditer(s):
                var = m.group(1)
                if not var.isupper() or var in defined or var in SHELL_VARIABLES:
                    continue
                if var.startswith(PREDEFINED_PREFIXES) and var not in ctx.documented_required:
                    continue
                if var not in ctx.documented:
                    undocumented.setdefault(var, set()).add(name)
    for var, where in sorted(undocumented.items()):
        v.add("variable-undocumented", ",".join(sorted(where)),
              f"${var} is read but not defined in the pipeline nor listed in docs/ci-variables.md")
    for scope, variables in [("(global)", pipeline.get("variables") or {})] + [
            (n, j.get("variables") or {}) for n, j in jobs.items()]:
        for key, value in variables.items():
            text = _var_value(value)
            if SECRET_NAME.search(key) and text and not VAR_REF.fullmatch(text.strip()):
                v.add("secret-literal", scope, f"{key} is set to a literal; use a masked CI/CD variable")


# ------------------------------------------------------------------------------------------


def load_context(args: argparse.Namespace) -> Context:
    root = Path(args.root)
    junit: dict[str, str] = {}
    nextest = root / ".config" / "nextest.toml"
    if nextest.exists():
        for profile, body in tomllib.loads(nextest.read_text()).get("profile", {}).items():
            path = (body.get("junit") or {}).get("path")
            if path:
                junit[profile] = path
    msrv = None
    cargo = root / "Cargo.toml"
    if cargo.exists():
        manifest = tomllib.loads(cargo.read_text())
        msrv = (manifest.get("workspace", {}).get("package", {}).get("rust-version")
                or manifest.get("package", {}).get("rust-version"))
    docs = root / args.docs
    documented = set(re.findall(r"`\$?([A-Z][A-Z0-9_]*)`", docs.read_text())) if docs.exists() else set()
    return Context(root=root, nextest_junit=junit, msrv=msrv, documented=documented)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("expanded", help="expanded pipeline YAML (gitlab-ci-local --preview)")
    parser.add_argument("--root", default=".", help="repository root the paths are relative to")
    parser.add_argument("--image-pin", required=True, metavar="BINARY",
                        help="the image-pin binary (cargo build -p logpipe-image-pin)")
    parser.add_argument("--docs", default="docs/ci-variables.md", help="CI variables doc, under root")
    parser.add_argument("--gcl-scenario", action="append", default=[], metavar="LABEL=FILE",
                        help="gitlab-ci-local --list-json output of one scenario; LABEL starting "
                             "with 'main' means a main-branch pipeline")
    args = parser.parse_args(argv)
    IMAGE_PIN[:] = [args.image_pin]
    try:
        pipeline = load_pipeline(Path(args.expanded))
        ctx = load_context(args)
    except (OSError, ValueError, yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        print(f"ci_invariants: {error}", file=sys.stderr)
        return 2
    jobs = jobs_of(pipeline)
    v = Violations()
    try:
        scenarios = load_scenarios(args.gcl_scenario)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"ci_invariants: cannot read a scenario: {error}", file=sys.stderr)
        return 2
    check_images(pipeline, jobs, v)
    check_production(jobs, scenarios, v)
    check_needs(pipeline, jobs, v)
    check_needs_present(jobs, scenarios, v)
    check_test_entry_point(jobs, v)
    check_paths(ctx.root, pipeline, jobs, v)
    check_artifacts(ctx, pipeline, jobs, v)
    check_interruptible(jobs, v)
    check_msrv(ctx, pipeline, jobs, v)
    check_notify(jobs, v)
    check_variables(ctx, pipeline, jobs, v)
    for code, job, message in v.items:
        print(f"[{code}] {job}: {message}")
    if v.items:
        print(f"ci_invariants: {len(v.items)} violation(s) in {len(jobs)} jobs", file=sys.stderr)
        return 1
    print(f"ci_invariants: {len(jobs)} jobs, every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
