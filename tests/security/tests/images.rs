//! Container images and Kubernetes manifests, read statically: every image a Dockerfile builds
//! (its final stage and any other target that sets what it runs) runs as a non-root user, bakes
//! no secret into `ENV`/`ARG` and builds on tagged (not `latest`) base images; every Kubernetes
//! workload under `deploy/k8s` (the base and each overlay as `kubectl kustomize` renders it)
//! runs as non-root with a read-only root filesystem and without privilege escalation. The
//! checkers themselves are shown to flag bad input.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::path::{Path, PathBuf};
use std::process::Command;

use logpipe_security::{dockerfile, k8s, yaml};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every Dockerfile of the repository (`Dockerfile`, `Dockerfile.*`, `*.Dockerfile`,
/// `Containerfile`), outside build output, dependency folders and hidden folders: VCS, and in a
/// GitLab job the caches inside the checkout (`.cargo` holds the sources of every crate, with
/// their own Dockerfiles; `.cache`, `.ci-tools`).
fn dockerfiles(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            if !(matches!(name.as_str(), "target" | "node_modules") || name.starts_with('.')) {
                dockerfiles(&path, out);
            }
        } else if name == "Dockerfile"
            || name == "Containerfile"
            || name.starts_with("Dockerfile.")
            || name.ends_with(".Dockerfile")
            || name.ends_with(".Containerfile")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_dockerfile_runs_as_non_root_on_pinned_bases_without_baked_secrets() {
    let root = repo_root();
    let mut files = Vec::new();
    dockerfiles(&root, &mut files);
    files.sort();
    let relative: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    for expected in [
        "Dockerfile",
        "tests/containers/standins/kafka.Containerfile",
        "tests/containers/standins/loki.Containerfile",
    ] {
        assert!(
            relative.iter().any(|r| r == expected),
            "{expected} not found among {relative:?}"
        );
    }
    let mut problems = Vec::new();
    for (file, name) in files.iter().zip(&relative) {
        let text = std::fs::read_to_string(file).unwrap();
        problems.extend(dockerfile::check(name, &text));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README's memory figures for the consumer assume glibc's arenas capped at 2, which the
/// image sets in its own stage (the `consumer` target, where the process runs).
#[test]
fn the_consumer_image_caps_glibc_malloc_arenas() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let parsed = dockerfile::parse(&text);
    let consumer = parsed
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some("consumer"))
        .expect("a consumer target");
    let env: Vec<&str> = consumer
        .instructions
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    assert!(
        env.contains(&"MALLOC_ARENA_MAX=2"),
        "the consumer's final stage ENV: {env:?}"
    );
}

#[test]
fn the_dockerfile_checker_flags_an_image_that_runs_as_root() {
    let cases = [
        ("no USER at all", "FROM debian:12.8-slim\nCMD [\"app\"]\n"),
        ("USER root", "FROM debian:12.8-slim\nUSER root\n"),
        ("USER 0:0", "FROM debian:12.8-slim\nUSER 0:0\n"),
        (
            "non-root only in the builder stage",
            "FROM rust:1.95-bookworm AS build\nUSER 1000\nFROM debian:12.8-slim\nCOPY --from=build /a /a\n",
        ),
        (
            "a second target without USER",
            "FROM debian:12.8-slim AS one\nUSER 10001\nFROM debian:12.8-slim AS two\nCMD [\"app\"]\nFROM debian:12.8-slim\nUSER 10001\n",
        ),
        (
            "a non-root user followed by root",
            "FROM debian:12.8-slim\nUSER 10001\nRUN true\nUSER root\n",
        ),
        (
            "a named user never created",
            "FROM debian:12.8-slim\nUSER app\n",
        ),
        ("a user from a variable", "FROM debian:12.8-slim\nUSER $APP_USER\n"),
    ];
    for (what, text) in cases {
        let problems = dockerfile::check("t", text);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("root") || p.contains("USER")),
            "{what}: not flagged: {problems:?}"
        );
    }
    let good = "FROM debian:12.8-slim\nRUN useradd --system --uid 10001 app\nUSER app\n";
    assert_eq!(dockerfile::check("t", good), Vec::<String>::new());
    let numeric = "FROM debian:12.8-slim\nUSER 10001:10001\n";
    assert_eq!(dockerfile::check("t", numeric), Vec::<String>::new());
    // Stages other stages build on or copy from are not images of their own.
    let targets = "FROM rust:1.95-bookworm AS build\nRUN true\nFROM scratch AS base\n\
                   COPY --from=build /a /a\nFROM base AS one\nUSER 10001\nFROM base AS two\n\
                   USER 10001:10001\n";
    assert_eq!(dockerfile::check("t", targets), Vec::<String>::new());
}

#[test]
fn the_dockerfile_checker_flags_unpinned_bases_and_baked_secrets() {
    let user = "\nUSER 10001\n";
    for (what, text, needle) in [
        ("no tag", "FROM debian", "no tag"),
        ("latest", "FROM debian:latest", "latest"),
        ("major-only tag", "FROM rust:1-bookworm", "not a version"),
        (
            "release name only",
            "FROM debian:bookworm-slim",
            "not a version",
        ),
        (
            "registry port but no tag",
            "FROM registry.example.com:5000/team/app",
            "no tag",
        ),
        (
            "ARG without default",
            "ARG BASE\nFROM ${BASE}",
            "build argument",
        ),
        (
            "ENV password",
            "FROM debian:12.8-slim\nENV LOKI_PASSWORD=hunter2",
            "LOKI_PASSWORD",
        ),
        (
            "legacy ENV form",
            "FROM debian:12.8-slim\nENV DB_SECRET hunter2",
            "DB_SECRET",
        ),
        (
            "ARG token",
            "FROM debian:12.8-slim\nARG GITLAB_TOKEN",
            "GITLAB_TOKEN",
        ),
        (
            "global ARG api key",
            "ARG API_KEY=abc\nFROM debian:12.8-slim",
            "API_KEY",
        ),
    ] {
        let problems = dockerfile::check("t", &format!("{text}{user}"));
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{what}: not flagged with {needle:?}: {problems:?}"
        );
    }
    let fine = "ARG RUST=1.95-bookworm\nFROM rust:${RUST} AS build\nFROM build AS test\n\
                FROM gcr.io/distroless/cc@sha256:0123abcd\nENV INGEST_TOKEN_FILE=/run/secrets/t\n\
                USER 65532\n";
    assert_eq!(dockerfile::check("t", fine), Vec::<String>::new());
}

fn k8s_documents(dir: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let docs = yaml::parse_documents(&text, &name).unwrap();
        out.push((name, docs));
    }
    out
}

#[test]
fn kubernetes_base_workloads_run_as_non_root_read_only_without_escalation() {
    let mut containers = Vec::new();
    let mut problems = Vec::new();
    for (name, docs) in k8s_documents(&repo_root().join("deploy/k8s/base")) {
        let report = k8s::check(&name, &docs);
        containers.extend(report.containers);
        problems.extend(report.problems);
    }
    for expected in [
        "Deployment/producer/producer",
        "Deployment/consumer/consumer",
    ] {
        assert!(
            containers.iter().any(|c| c == expected),
            "{expected} not checked; saw {containers:?}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rendered_kubernetes_overlays_keep_the_security_context() {
    let overlays = repo_root().join("deploy/k8s/overlays");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&overlays)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no overlay under {}", overlays.display());
    for dir in dirs {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl is needed to render the overlays (as scripts/check-deploy.sh): {e}")
            });
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = dir.display().to_string();
        let docs = yaml::parse_documents(&String::from_utf8_lossy(&out.stdout), &name).unwrap();
        let report = k8s::check(&name, &docs);
        assert!(
            report.containers.len() >= 2,
            "{name}: only {:?} checked",
            report.containers
        );
        assert!(report.problems.is_empty(), "{}", report.problems.join("\n"));
    }
}

#[test]
fn the_kubernetes_checker_flags_a_container_without_a_security_context() {
    let text =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  template:\n    \
                spec:\n      containers:\n        - name: app\n          image: app:1\n      \
                initContainers:\n        - name: init\n          securityContext:\n            \
                runAsNonRoot: true\n            readOnlyRootFilesystem: true\n            \
                allowPrivilegeEscalation: true\n";
    let docs = yaml::parse_documents(text, "bad.yaml").unwrap();
    let report = k8s::check("bad.yaml", &docs);
    assert_eq!(
        report.containers,
        ["Deployment/bad/init", "Deployment/bad/app"]
    );
    let joined = report.problems.join("\n");
    for needle in [
        "bad/app: runAsNonRoot",
        "bad/app: readOnlyRootFilesystem",
        "bad/app: allowPrivilegeEscalation",
        "bad/init: allowPrivilegeEscalation",
    ] {
        assert!(joined.contains(needle), "{needle} missing in:\n{joined}");
    }
    assert_eq!(report.problems.len(), 4, "{joined}");
}
