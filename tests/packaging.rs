//! The shipped Prometheus alert rules pass `promtool check rules` and their unit tests
//! (`packaging/prometheus/alerts.test.yml`: each alert fires on the series that should set it
//! off and stays quiet on healthy ones). `make test` installs Debian's `prometheus` package for
//! promtool; without it the test fails under `make test` and is skipped otherwise.

use std::path::Path;
use std::process::Command;

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus");
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("STAGELOAD_REQUIRE_STACK").is_none(),
            "promtool is missing (make test installs the prometheus package)"
        );
        eprintln!("skipped: promtool is not installed");
        return;
    }
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
