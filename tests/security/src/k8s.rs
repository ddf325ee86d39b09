//! Security checks of Kubernetes workloads: every container (and init container) of every
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod runs as non-root
//! (`runAsNonRoot: true` on the container or the pod, no `runAsUser: 0`), with a read-only root
//! filesystem, without privilege escalation and not privileged.

use serde_json::Value;

/// What the check saw: the containers checked (as `Kind/name/container`) and the problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every container checked.
    pub containers: Vec<String>,
    /// One line per problem.
    pub problems: Vec<String>,
}

/// Checks every workload among `documents` (`what` prefixes the problems).
pub fn check(what: &str, documents: &[Value]) -> Report {
    let mut report = Report::default();
    for doc in documents {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &doc["spec"]["template"]["spec"]
            }
            "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &doc["spec"],
            _ => continue,
        };
        let name = doc["metadata"]["name"].as_str().unwrap_or("?");
        let pod_context = &pod["securityContext"];
        let containers = ["initContainers", "containers"]
            .iter()
            .filter_map(|k| pod[*k].as_array())
            .flatten();
        for container in containers {
            let id = format!(
                "{kind}/{name}/{}",
                container["name"].as_str().unwrap_or("?")
            );
            for problem in container_problems(&container["securityContext"], pod_context) {
                report.problems.push(format!("{what}: {id}: {problem}"));
            }
            report.containers.push(id);
        }
    }
    report
}

fn container_problems(container: &Value, pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let effective = |key: &str| {
        let own = &container[key];
        if own.is_null() {
            &pod[key]
        } else {
            own
        }
    };
    if effective("runAsNonRoot") != &Value::Bool(true) {
        problems.push("runAsNonRoot is not true (on the container or the pod)".to_owned());
    }
    if effective("runAsUser").as_i64() == Some(0) {
        problems.push("runAsUser is 0 (root)".to_owned());
    }
    if container["readOnlyRootFilesystem"] != Value::Bool(true) {
        problems.push("readOnlyRootFilesystem is not true".to_owned());
    }
    if container["allowPrivilegeEscalation"] != Value::Bool(false) {
        problems.push("allowPrivilegeEscalation is not false".to_owned());
    }
    if container["privileged"] == Value::Bool(true) {
        problems.push("privileged is true".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_level_run_as_non_root_counts_for_its_containers() {
        let doc = json!({
            "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c", "securityContext": {
                    "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false}}]
            }}}
        });
        let r = check("x", &[doc]);
        assert_eq!(r.containers, ["Deployment/d/c"]);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn a_container_overriding_the_pod_with_root_is_flagged() {
        let doc = json!({
            "kind": "CronJob", "metadata": {"name": "j"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c", "securityContext": {
                    "runAsNonRoot": false, "runAsUser": 0, "privileged": true}}]
            }}}}}
        });
        let r = check("x", &[doc]);
        assert_eq!(r.problems.len(), 5, "{:?}", r.problems);
    }
}
